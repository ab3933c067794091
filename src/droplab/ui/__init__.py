"""``droplab ui``: the MLflow UI and optuna-dashboard on an experiment's stores, on loopback.

``services`` plans them (checked ports, readable stores, deep links), ``processes``
runs the servers as child process groups, ``__main__`` is the optuna-dashboard child.
"""

from __future__ import annotations

from droplab.ui.processes import (
    READY_SECONDS,
    Child,
    Service,
    UiError,
    answers,
    base_url,
    is_loopback,
    launch,
    stop,
    wait_ready,
    watch,
)
from droplab.ui.services import (
    DASHBOARD,
    HOST,
    MLFLOW,
    STORAGE_ENV,
    dashboard_service,
    deep_links,
    exposure_warning,
    mlflow_service,
    plan,
    serve,
)

__all__ = [
    "DASHBOARD",
    "HOST",
    "MLFLOW",
    "READY_SECONDS",
    "STORAGE_ENV",
    "Child",
    "Service",
    "UiError",
    "answers",
    "base_url",
    "dashboard_service",
    "deep_links",
    "exposure_warning",
    "is_loopback",
    "launch",
    "mlflow_service",
    "plan",
    "serve",
    "stop",
    "wait_ready",
    "watch",
]
