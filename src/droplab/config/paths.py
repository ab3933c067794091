"""Where each store of a config lives: ``paths.runs`` and the URIs derived from it."""

from __future__ import annotations

import os
from pathlib import Path

from droplab.config.identity import mask_secrets
from droplab.config.schema import Config


def runs_dir(cfg: Config) -> Path:
    """The one root for local state (``paths.runs``), as an absolute path."""
    return Path(os.path.abspath(cfg.paths.runs))


def tracking_uri(cfg: Config) -> str:
    """``tracking.uri`` or the SQLite MLflow store under ``paths.runs``."""
    return cfg.tracking.uri or f"sqlite:///{runs_dir(cfg) / 'mlflow.db'}"


def artifact_root(cfg: Config) -> str:
    return (runs_dir(cfg) / "mlartifacts").as_uri()


def experiment_name(cfg: Config) -> str:
    return cfg.tracking.experiment or cfg.name


def study_name(cfg: Config) -> str:
    return cfg.study.name or cfg.name


def study_storage(cfg: Config) -> str:
    """``study.storage``, or SQLite for one worker and a journal file for several."""
    if cfg.study.storage:
        return cfg.study.storage
    if cfg.study.workers > 1:
        return str(runs_dir(cfg) / "optuna.journal")
    return f"sqlite:///{runs_dir(cfg) / 'optuna.db'}"


def ui_hint(cfg: Config) -> str:
    """How to open the runs of ``cfg`` in the MLflow UI."""
    uri = mask_secrets(tracking_uri(cfg))
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"droplab ui  (or: mlflow ui --backend-store-uri {uri})"
