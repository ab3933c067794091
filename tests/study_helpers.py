"""Helpers for study tests: a tiny study config, and readers of the real stores."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import optuna
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from droplab import tracking
from droplab.config import Config, study_name, study_storage, tracking_uri
from droplab.storage import open_storage

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
    return [r for r in runs if r.data.tags.get(tracking.KIND) == kind]


def trial_runs(cfg: Config) -> dict[int, Run]:
    """The trial runs keyed by Optuna trial number."""
    _, runs = mlflow_runs(cfg)
    return {int(r.data.tags["optuna.trial_number"]): r for r in by_kind(runs, "trial")}


def states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, Any] = {}
    for t in study.get_trials():
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out
