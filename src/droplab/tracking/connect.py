"""Before anything is written: probe a tracking server, check a local store's folder, open the
store."""

from __future__ import annotations

import os
from pathlib import Path

from droplab.config.identity import first_line, mask_secrets
from droplab.config.paths import artifact_root, experiment_name, runs_dir, tracking_uri
from droplab.config.schema import Config, ConfigError
from droplab.locks import schema_lock
from droplab.tracking.store import MlflowTracker, Tracker
from droplab.tracking.template import seed_sqlite_store


def make_tracker(cfg: Config) -> Tracker:
    """The MLflow tracker for ``cfg`` (its SQLite store under ``paths.runs`` by default)."""
    if not cfg.tracking.enabled:
        return Tracker()
    uri = tracking_uri(cfg)
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    elif uri.startswith("sqlite:///"):
        _writable_dir(runs_dir(cfg))
    # A tracking server stores artifacts itself (mlflow-artifacts:/): a local root would send
    # each machine's files to its own disk, out of reach of the server and the other machines.
    remote = uri.startswith(("http://", "https://"))
    try:
        # Processes started together on a fresh store take turns to create it: MLflow's
        # schema migrations fail when several run at once.
        with schema_lock(uri):
            if uri.startswith("sqlite:///"):  # a new store: a copy, not MLflow's migrations
                seed_sqlite_store(Path(uri.removeprefix("sqlite:///").split("?")[0]))
            return MlflowTracker(uri, experiment_name(cfg), None if remote else artifact_root(cfg))
    except Exception as exc:  # bad URI scheme, driver missing, database refused...
        raise ConfigError(
            f"tracking.uri={mask_secrets(uri)} cannot be used: {first_line(exc)}"
        ) from None


def read_store(uri: str) -> Tracker:
    """A tracker that reads the runs of the MLflow store at ``uri`` by id (a logged run's
    metrics, artifacts); it creates no experiment. A missing SQLite file is created empty:
    a caller that must not create one checks the path first."""
    return MlflowTracker(uri)


def unwritable(path: Path) -> str | None:
    """Why ``path`` cannot be (made into) a folder droplab writes to, or None when it can."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".droplab-write-test-{os.getpid()}"  # workers start together
        probe.touch()
        probe.unlink()
    except OSError as exc:
        return "a file is in the way" if path.exists() and not path.is_dir() else exc.strerror
    return None


def _writable_dir(path: Path) -> None:
    reason = unwritable(path)
    if reason is not None:
        raise ConfigError(f"paths.runs={path} is not writable: {reason}")


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Refuse an HTTP tracking server that does not answer, before any training starts."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as reply:
            if reply.status == 200:
                return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"tracking.uri={mask_secrets(uri)} is unreachable: {reason}") from None
    raise ConfigError(f"tracking.uri={mask_secrets(uri)} is not an MLflow server")
