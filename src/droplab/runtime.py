"""Process-wide settings, applied once at an entry point (the CLI, a spawned study worker, the
Python API), never as a side effect of importing a module.

Each setting is a default: a variable the user already set in the environment wins.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import warnings
from typing import NoReturn

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


def setup(optuna: bool = True) -> None:
    """Apply droplab's process defaults: MLflow environment, log levels, warning filters, a
    headless matplotlib backend and (``optuna=True``) Optuna's quiet logger. Idempotent.

    Nothing heavy is imported here: matplotlib takes its backend from ``MPLBACKEND`` when it
    is first imported (or now, if it already is). ``optuna=False`` leaves Optuna alone for a
    command that does not use it (``droplab train``, ``config``): Optuna resets its logger
    when it is imported, so a command that imports it later calls :func:`quiet_optuna`.
    """
    for key, value in MLFLOW_ENV.items():
        os.environ.setdefault(key, value)
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    # Lightning's per-fit banners (accelerator, tips) and MLflow's INFO lines would print once
    # per trial; Optuna's "Trial N finished" lines repeat what droplab's table says.
    for name in ("pytorch_lightning", "lightning.pytorch", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    headless_plots()
    if optuna:
        quiet_optuna()


def headless_plots() -> None:
    """Matplotlib's Agg backend: no display on servers or in CI (a user's MPLBACKEND wins).

    Importing matplotlib costs half a second: a process that draws nothing does not pay it.
    """
    os.environ.setdefault("MPLBACKEND", "Agg")
    if "matplotlib" in sys.modules:  # imported before setup (a notebook, the Python API)
        import matplotlib

        matplotlib.use(os.environ["MPLBACKEND"])


def quiet_optuna() -> None:
    """Optuna's "Trial N finished" lines repeat what droplab's table says: warnings only."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` once its work is done, without tearing it down.

    A normal exit frees every module (torch, Lightning, SQLAlchemy, ...) one object at a time,
    for nothing the user sees: 4-5 s of a short ``droplab train`` on a loaded machine. Here the
    output streams are flushed and the exit handlers run (MLflow's, Optuna's, logging's,
    coverage's in CI), then the process ends. If a thread other than the main one is still at
    work (not a daemon), the normal exit waits for it instead.
    """
    _flush_output()
    workers = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if any(t.is_alive() and not t.daemon for t in workers):
        sys.exit(code)
    atexit._run_exitfuncs()  # what the interpreter would run first on its way out
    _flush_output()
    os._exit(code)


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (``droplab config | head -1``)
            pass
