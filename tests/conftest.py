"""Shared fixtures: the real default config, shrunk so a fit takes a fraction of a second;
fresh PostgreSQL databases and a real ``mlflow server`` for the tests that need engines."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import psycopg
import pytest

from droplab import runtime, ui
from droplab.config import Config, load_config

runtime.setup()  # what the CLI does first: MLflow retry defaults, quiet logs, headless plots

REPO = Path(__file__).resolve().parents[1]
SERVER = "postgresql://postgres@127.0.0.1:5432"

# Small but honest: enough rows that each split holds positives, a few epochs.
TINY = [
    "data.rows=1500",
    "data.fraud_rate=0.05",
    "model.width=16",
    "train.epochs=3",
    "train.batch_size=128",
    "train.threads=1",
]


def tiny_config(tmp_path: Path, *overrides: str, experiment: str | None = None) -> Config:
    """The real default config, shrunk, with every store under ``tmp_path``."""
    return load_config(experiment, [f"paths.runs={tmp_path / 'runs'}", *TINY, *overrides])


@pytest.fixture(autouse=True, scope="module")
def _own_module_store() -> None:
    """MLflow exports MLFLOW_TRACKING_URI when it logs a model (set_tracking_uri): a leaked
    value would send a module's fixture runs to another store than its tmp_path."""
    for variable in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE"):
        os.environ.pop(variable, None)


@pytest.fixture(autouse=True)
def _no_default_stores(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's (or an earlier test's) MLFLOW_TRACKING_URI / OPTUNA_STORAGE would send a
    test's runs to another store than its tmp_path: every test starts without them."""
    for variable in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def tiny(tmp_path: Path) -> Config:
    return tiny_config(tmp_path)


@dataclass(frozen=True)
class Cluster:
    storage: str  # the Optuna database
    tracking: str  # the MLflow server's URL
    artifacts: Path  # the server's artifact root
    new_database: Callable[[str], str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mlflow_server(
    store: str, artifacts: Path, port: int, logs: Path, workers: int = 2
) -> list[ui.Child]:
    """``mlflow server`` on ``store`` (artifacts proxied to a local root), answering."""
    argv = (
        *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)),
        *("--artifacts-destination", str(artifacts), "--workers", str(workers)),
    )
    env = {"MLFLOW_BACKEND_STORE_URI": store, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    url = ui.base_url("127.0.0.1", port)
    service = ui.Service("MLflow server", url, store, argv, env, probe=url + "health")
    children = ui.launch([service], logs)
    try:
        ui.wait_ready(children)
    except BaseException:
        ui.stop(children)
        raise
    return children


@pytest.fixture(scope="module")
def new_database() -> Iterator[Callable[[str], str]]:
    """Fresh PostgreSQL databases, dropped (connections and all) when the module ends."""
    names: list[str] = []

    def create(kind: str) -> str:
        name = f"droplab_{kind}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        names.append(name)
        return f"{SERVER}/{name}"

    yield create
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def cluster(
    new_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """``mlflow server`` on a PostgreSQL backend store, artifacts proxied to a local root."""
    port = free_port()
    artifacts = tmp_path_factory.mktemp("server") / "mlartifacts"
    logs = tmp_path_factory.mktemp("server-logs")
    children = mlflow_server(new_database("mlflow"), artifacts, port, logs)
    try:
        optuna_db = initialised(new_database("optuna"))
        url = ui.base_url("127.0.0.1", port).rstrip("/")
        yield Cluster(optuna_db, url, artifacts, new_database)
    finally:
        ui.stop(children)


def initialised(storage: str) -> str:
    """Create Optuna's tables once, as docs/scaling_out.md's server setup does: workers that
    all find an empty database race on CREATE TABLE (test_workers_opening_a_fresh_database)."""
    optuna.storages.RDBStorage(storage).engine.dispose()
    return storage
