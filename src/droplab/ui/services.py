"""``droplab ui``: the MLflow UI and optuna-dashboard on an experiment's stores.

Both servers run as child processes in their own process group, bound to 127.0.0.1 unless
``--host`` says otherwise (neither has authentication). Store URLs reach the children through
their environment, never their argv, so ``ps`` shows no password. Ctrl-C (or SIGTERM) stops both
children and returns 130 (143); a child that dies returns 1 with the tail of its log.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from droplab import interrupts
from droplab.config.identity import mask_secrets
from droplab.config.paths import (
    artifact_root,
    experiment_name,
    runs_dir,
    study_name,
    study_storage,
    tracking_uri,
)
from droplab.config.schema import Config, ConfigError
from droplab.tracking.connect import unwritable
from droplab.ui.processes import (
    NO_PROXY,
    Child,
    Service,
    UiError,
    base_url,
    check_ports,
    is_loopback,
    launch,
    stop,
    wait_ready,
    watch,
)

HOST, MLFLOW_PORT, DASHBOARD_PORT = "127.0.0.1", 5000, 8080


MLFLOW, DASHBOARD = "MLflow UI", "optuna-dashboard"


STORAGE_ENV = "DROPLAB_UI_STORAGE"  # the dashboard child reads its storage URL from here


# Children inherit the environment; these only apply where the user has not set them.
_MLFLOW_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # GenAI job runners: 8 idle processes
}


# The MLflow UI opens on its GenAI overview unless told that this is model training.
# The run list, not the GenAI overview, in MLflow's own order: a link sorted by a metric
# (orderByKey=metrics.`final/gap_loss`) shows the trials as rows of their own, not nested.
# Selected columns and expanded rows live in the browser: docs/ui.md says how to set them.
_TRAINING_VIEW = "runs?workflowType=machine_learning"


def serve(
    cfg: Config,
    host: str = HOST,
    port: int = MLFLOW_PORT,
    dashboard_port: int = DASHBOARD_PORT,
    ready: Callable[[dict[str, str]], None] | None = None,
) -> int:
    """Start both UIs on the stores of ``cfg``, print their URLs and wait for Ctrl-C.

    Args:
        cfg: the experiment's config (``paths.runs``, ``tracking.uri``, ``study.storage``).
        host: interface to bind; anything but loopback prints a warning (no authentication).
        port: the MLflow UI's port.
        dashboard_port: optuna-dashboard's port.
        ready: called with ``{name: url}`` once both answer HTTP (tests, notebooks).

    Returns:
        The exit code: 130 (143) after Ctrl-C (SIGTERM), 1 when a server failed.

    Raises:
        ConfigError: a port is taken or invalid, or there is no store to show.
    """
    services = plan(cfg, host, port, dashboard_port)
    if not is_loopback(host):
        print(exposure_warning(host), file=sys.stderr)
    children: list[Child] = []
    try:
        for service in services:  # one at a time: a Ctrl-C in between still stops the first
            children += launch([service], runs_dir(cfg) / "ui")
        wait_ready(children)
        urls = deep_links(cfg, services)
        print(f"droplab ui: experiment {experiment_name(cfg)}, study {study_name(cfg)}")
        print_urls(services, urls, children)
        if ready is not None:
            ready(urls)
        return watch(children)
    except KeyboardInterrupt as exc:
        print(f"\ndroplab: stopping {' and '.join(c.service.name for c in children) or 'nothing'}")
        return exc.exit_code if isinstance(exc, interrupts.Interrupted) else 130
    except UiError as exc:
        print(f"droplab: error: {exc}", file=sys.stderr)
        return 1
    finally:
        stop(children)


def plan(cfg: Config, host: str, port: int, dashboard_port: int) -> list[Service]:
    """The UIs to show for ``cfg``: checked ports, readable stores, a log folder, masked URLs."""
    check_ports(host, port, dashboard_port)
    _check_log_dir(runs_dir(cfg) / "ui")
    candidates = (mlflow_service(cfg, host, port), dashboard_service(cfg, host, dashboard_port))
    services = [s for s in candidates if s is not None]
    if not services:
        raise ConfigError(
            f"nothing to show: no MLflow store and no Optuna storage under {runs_dir(cfg)} "
            "yet; run `droplab study EXP.yaml` (or train) first, or name the stores with "
            "tracking.uri=... study.storage=..."
        )
    return services


def mlflow_service(cfg: Config, host: str, port: int) -> Service | None:
    """``mlflow server`` on the tracking store, or just the URL of a tracking server."""
    uri = tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        return Service(MLFLOW, uri.rstrip("/") + "/", mask_secrets(uri))
    if _missing(uri):
        print(f"droplab: no MLflow store at {uri} yet; MLflow UI not started", file=sys.stderr)
        return None
    _check_readable(uri, "tracking.uri")
    root = artifact_root(cfg)
    argv = (
        *(sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port)),
        *("--default-artifact-root", root, "--artifacts-destination", root, "--workers", "1"),
    )
    env = {"MLFLOW_BACKEND_STORE_URI": uri, **_MLFLOW_ENV}
    url = base_url(host, port)
    return Service(MLFLOW, url, mask_secrets(uri), argv, env, probe=url + "health")


def dashboard_service(cfg: Config, host: str, port: int) -> Service | None:
    """optuna-dashboard on the study storage (RDB or journal file) through the Python API."""
    url = study_storage(cfg)
    if _missing(url):
        print(f"droplab: no Optuna storage at {url} yet; dashboard not started", file=sys.stderr)
        return None
    _check_readable(url, "study.storage")
    argv = (sys.executable, "-m", "droplab.ui", host, str(port))
    web = base_url(host, port)
    return Service(
        DASHBOARD, web, mask_secrets(url), argv, {STORAGE_ENV: url}, probe=web + "api/studies"
    )


def _missing(url: str) -> bool:
    """A local store (SQLite file, journal file) that does not exist yet."""
    if url.startswith("sqlite:///"):
        return not Path(url.removeprefix("sqlite:///")).exists()
    return "://" not in url and not Path(url).exists()


def _check_readable(url: str, key: str) -> None:
    """A local store the servers could not open (not a database, unreadable) is refused in one
    line here, not as a server's traceback after it started."""
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").split("?")[0]
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                db.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise ConfigError(f"{key}={mask_secrets(url)} cannot be read: {exc}") from None
    elif "://" not in url and not (Path(url).is_file() and os.access(url, os.R_OK)):
        raise ConfigError(f"{key}={url} cannot be read: not a readable journal file")


def _check_log_dir(logs: Path) -> None:
    """The servers' logs go to ``<paths.runs>/ui``: it must be (or become) a writable folder."""
    reason = unwritable(logs)
    if reason is not None:
        raise ConfigError(f"cannot write the UI logs to {logs}: {reason}")


def exposure_warning(host: str) -> str:
    return (
        f"droplab: warning: --host {host} exposes the MLflow UI and optuna-dashboard beyond "
        "this machine, and they have no authentication: anyone who can reach the ports can read "
        "(and edit) the runs and the study. MLflow only accepts private-IP and localhost Host "
        "headers unless MLFLOW_SERVER_ALLOWED_HOSTS is set. Prefer an SSH tunnel: "
        "ssh -L 5000:127.0.0.1:5000 -L 8080:127.0.0.1:8080 HOST"
    )


def deep_links(cfg: Config, services: Sequence[Service]) -> dict[str, str]:
    """Each UI's URL, pointing at this experiment's runs and this study when they exist."""
    urls = {s.name: s.url for s in services}
    if MLFLOW in urls:
        query = urllib.parse.urlencode({"experiment_name": experiment_name(cfg)})
        found = _get_json(f"{urls[MLFLOW]}api/2.0/mlflow/experiments/get-by-name?{query}")
        if found:
            urls[MLFLOW] += (
                f"#/experiments/{found['experiment']['experiment_id']}/{_TRAINING_VIEW}"
            )
    if DASHBOARD in urls:
        studies = (_get_json(f"{urls[DASHBOARD]}api/studies") or {}).get("study_summaries", [])
        ids = [s["study_id"] for s in studies if s["study_name"] == study_name(cfg)]
        if ids:
            urls[DASHBOARD] += f"dashboard/studies/{ids[0]}"
    return {name: mask_secrets(url) for name, url in urls.items()}


def _get_json(url: str) -> Any:
    try:
        with NO_PROXY.open(url, timeout=10) as response:
            return json.loads(response.read())
    except (OSError, ValueError):  # absent experiment (404), unreachable: keep the base URL
        return None


def print_urls(
    services: Sequence[Service], urls: Mapping[str, str], children: Sequence[Child]
) -> None:
    started = {c.service.name: c.log for c in children}
    for service in services:
        how = f"log {started[service.name]}" if service.name in started else "already running"
        print(f"  {service.name:<16} {urls[service.name]}")
        print(f"  {'':<16} store {service.store}; {how}")
    print("  Ctrl-C stops " + (" and ".join(started) if started else "nothing (none started)"))
    sys.stdout.flush()  # the URLs must show at once, also through a pipe
