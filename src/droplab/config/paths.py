"""Where each store of a config lives: ``paths.runs`` and the URIs derived from it."""

from __future__ import annotations

import os
from pathlib import Path

from droplab.config.identity import mask_secrets
from droplab.config.schema import Config


def runs_dir(cfg: Config) -> Path:
    """The one root for local state (``paths.runs``), as an absolute path."""
    return Path(os.path.abspath(cfg.paths.runs))


# The ecosystem's own variables name the default stores, as they do for mlflow and optuna.
TRACKING_ENV = "MLFLOW_TRACKING_URI"
STORAGE_ENV = "OPTUNA_STORAGE"


def tracking_uri(cfg: Config) -> str:
    """``tracking.uri``, else ``$MLFLOW_TRACKING_URI``, else SQLite under ``paths.runs``."""
    return cfg.tracking.uri or os.environ.get(TRACKING_ENV) or _local_tracking(cfg)


def tracking_source(cfg: Config) -> str:
    """Which setting chose :func:`tracking_uri`: the key, the variable or the default."""
    if cfg.tracking.uri:
        return "tracking.uri"
    return TRACKING_ENV if os.environ.get(TRACKING_ENV) else f"default under {cfg.paths.runs}"


def _local_tracking(cfg: Config) -> str:
    return f"sqlite:///{runs_dir(cfg) / 'mlflow.db'}"


def artifact_root(cfg: Config) -> str:
    return (runs_dir(cfg) / "mlartifacts").as_uri()


def experiment_name(cfg: Config) -> str:
    return cfg.tracking.experiment or cfg.name


def study_name(cfg: Config) -> str:
    return cfg.study.name or cfg.name


def study_storage(cfg: Config) -> str:
    """``study.storage``, else ``$OPTUNA_STORAGE``, else SQLite for one worker and a journal
    file for several or ``auto`` (the same file whatever ``auto`` chooses on a machine)."""
    if cfg.study.storage:
        return cfg.study.storage
    if os.environ.get(STORAGE_ENV):
        return os.environ[STORAGE_ENV]
    if cfg.study.workers == "auto" or cfg.study.workers > 1:
        return str(runs_dir(cfg) / "optuna.journal")
    return f"sqlite:///{runs_dir(cfg) / 'optuna.db'}"


def ui_hint(cfg: Config) -> str:
    """How to open the runs of ``cfg`` in the MLflow UI."""
    uri = mask_secrets(tracking_uri(cfg))
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"droplab ui  (or: mlflow ui --backend-store-uri {uri})"


def storage_source(cfg: Config) -> str:
    """Which setting chose :func:`study_storage`: the key, the variable or the default."""
    if cfg.study.storage:
        return "study.storage"
    return STORAGE_ENV if os.environ.get(STORAGE_ENV) else f"default under {cfg.paths.runs}"
