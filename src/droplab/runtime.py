"""Process-wide settings, applied once at an entry point (the CLI, a spawned study worker, the
Python API), never as a side effect of importing a module.

Each setting is a default: a variable the user already set in the environment wins.
"""

from __future__ import annotations

import logging
import os
import warnings

# MLflow reads these when it first talks to a store.
MLFLOW_ENV = {
    "MLFLOW_LOGGING_LEVEL": "WARNING",  # no "creating tables" banners
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # A tracking server that drops mid-study is retried with backoff (1+2+4+8 s), then the
    # trial fails with the reason; MLflow's own default waits minutes.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "4",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    # MLflow prints "View run ... at: URL" on every run it ends through a server.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}

# Messages that say nothing to a droplab user, once per trial.
QUIET_WARNINGS = (
    # droplab runs its own ask/tell loop and keeps the heartbeat thread itself.
    "Heartbeat of storage is supposed to be used",
    ".*LeafSpec.*is deprecated",
)


def setup() -> None:
    """Apply droplab's process defaults: MLflow environment, log levels, warning filters and a
    headless matplotlib backend. Idempotent."""
    for key, value in MLFLOW_ENV.items():
        os.environ.setdefault(key, value)
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    # Lightning's per-fit banners (accelerator, tips) and MLflow's INFO lines would print once
    # per trial; Optuna's "Trial N finished" lines repeat what droplab's table says.
    for name in ("pytorch_lightning", "lightning.pytorch", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import matplotlib
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    matplotlib.use("Agg")  # headless: no display on servers or in CI
