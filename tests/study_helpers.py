"""Helpers for study tests: a tiny study config, and readers of the real stores."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from droplab import tags
from droplab.config import Config, study_name, study_storage, tracking_uri
from droplab.study.storage import open_storage
from droplab.tags import RUN_ID

from .conftest import tiny_config

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"

# A space over dropout and width with small widths, so each trial is a fraction of a second.
SMALL_SPACE = (
    "study.space={model.dropout: {type: float, low: 0.0, high: 0.8}, "
    "model.width: {type: int, low: 8, high: 64, log: true}}"
)


def study_config(tmp_path: Path, *overrides: str) -> Config:
    return tiny_config(tmp_path, "name=s", SMALL_SPACE, "study.pruner=none", *overrides)


def unique_name() -> str:
    return f"droplab-test-{uuid.uuid4().hex[:10]}"


def load(cfg: Config) -> optuna.Study:
    return optuna.load_study(study_name=study_name(cfg), storage=open_storage(study_storage(cfg)))


def mlflow_runs(cfg: Config) -> tuple[MlflowClient, list[Run]]:
    client = MlflowClient(tracking_uri=tracking_uri(cfg))
    exp = client.get_experiment_by_name(cfg.name)
    assert exp is not None
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def by_kind(runs: list[Run], kind: str) -> list[Run]:
    return [r for r in runs if r.data.tags.get(tags.KIND) == kind]


def trial_runs(cfg: Config) -> dict[int, Run]:
    """The trial runs keyed by Optuna trial number."""
    _, runs = mlflow_runs(cfg)
    return {int(r.data.tags["optuna.trial_number"]): r for r in by_kind(runs, "trial")}


def states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, Any] = {}
    for t in study.get_trials():
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def start_droplab(
    command: str, exp: Path, args: Sequence[str], log: Path, env: Mapping[str, str] = {}
) -> subprocess.Popen[str]:
    """``droplab COMMAND EXP args...`` as its own process, stdout to ``log``.out and stderr to
    ``log``.err (files: a pipe nobody reads would block a chatty child)."""
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "droplab.cli", command, str(exp), *args],
            stdout=out,
            stderr=err,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        )


def wait_running(
    cfg: Config,
    proc: subprocess.Popen[Any],
    finished: int = 0,
    timeout: float = 90,
    settle: float = 1.0,
) -> FrozenTrial:
    """Block until a trial of ``cfg``'s study runs inside its MLflow run, after ``finished``
    trials have completed; then ``settle`` seconds so that it is into its epochs."""
    deadline, study = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited with {proc.returncode} before a trial ran"
        try:
            study = study or load(cfg)  # load once: each load opens connections
            trials = study.get_trials(deepcopy=False)
        except Exception:  # noqa: BLE001 - the study (or its database) does not exist yet
            time.sleep(0.3)
            continue
        done = sum(t.state == TrialState.COMPLETE for t in trials)
        running = [t for t in trials if t.state == TrialState.RUNNING and RUN_ID in t.user_attrs]
        if running and done >= finished:
            time.sleep(settle)
            return running[0]
        time.sleep(0.2)
    raise AssertionError(f"no trial ran after {finished} finished within {timeout:.0f} s")
