"""Readers of a study's trials: load it without creating it, one row a trial, the best ones,
and the network a trial saved."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch
from optuna.trial import FrozenTrial, TrialState

from droplab import metrics, tags
from droplab.config.identity import mask_secrets
from droplab.config.load import with_overrides
from droplab.config.paths import study_name, study_storage
from droplab.config.schema import Config, ConfigError
from droplab.data.splits import Dataset, prepare
from droplab.fit.model import MLP
from droplab.fit.trainer import build_model
from droplab.study.storage import is_journal, open_storage
from droplab.tracking.store import Tracker

DROPOUT_KEY, WIDTH_KEY = "model.dropout", "model.width"


def load_study(cfg: Config) -> optuna.Study:
    """The study of ``cfg``; creates nothing when it is missing.

    Raises:
        ConfigError: there is no such study in the storage (one line, secrets masked).
    """
    name, url = study_name(cfg), study_storage(cfg)
    missing = ConfigError(f"no study '{name}' in {mask_secrets(url)}; run droplab study first")
    local = url.removeprefix("sqlite:///").split("?")[0] if url.startswith("sqlite:///") else url
    if (url.startswith("sqlite:///") or is_journal(url)) and not Path(local).is_file():
        raise missing  # opening would create an empty database or journal file
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url))
    except KeyError:
        raise missing from None


_SUMMARY = (*metrics.SUMMARY_KEYS, *metrics.OPTIONAL_SUMMARY_KEYS)


def trials_frame(study: optuna.Study, cfg: Config | None = None) -> pd.DataFrame:
    """One row per trial: number, state, dropout, width, every param, the summary metrics,
    ``baseline`` (a dropout-0 control), ``run_id``, ``fail_reason``, ``model_artifact`` and
    the objective ``values``. Dropout and width that were not searched come from ``cfg``."""
    fixed_p = cfg.model.dropout if cfg is not None else math.nan
    fixed_w = cfg.model.width if cfg is not None else math.nan
    rows = []
    for t in study.get_trials(deepcopy=False):
        summary = t.user_attrs.get(tags.SUMMARY) or {}
        p = t.params.get(DROPOUT_KEY, fixed_p)
        p = float(p) if isinstance(p, int | float) else math.nan  # per-layer rates: no scalar
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "dropout": p,
                "width": float(t.params.get(WIDTH_KEY, fixed_w)),
                **t.params,
                **{key: float(summary.get(key, math.nan)) for key in _SUMMARY},
                "baseline": bool(t.user_attrs.get(tags.BASELINE)) or p == 0.0,
                "run_id": t.user_attrs.get(tags.RUN_ID),
                "fail_reason": t.user_attrs.get(tags.FAIL_REASON),
                "model_artifact": bool(t.user_attrs.get(tags.MODEL)),
                "values": tuple(t.values) if t.values else None,
                # study.seeds: {seed: summary}, for CIs over seeds (empty: one seed a trial)
                "seed_summaries": {
                    int(s): v for s, v in (t.user_attrs.get(tags.SEED_SUMMARIES) or {}).items()
                },
            }
        )
    empty = ["number", "state", "dropout", "width", *metrics.SUMMARY_KEYS, "fail_reason"]
    return pd.DataFrame(rows, columns=None if rows else empty)


def first_direction(study: optuna.Study) -> str:
    """The first objective's direction, spelled as :mod:`droplab.metrics` spells it."""
    return study.directions[0].name.lower()


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Complete trials, best first by the first objective."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    direction = first_direction(study)
    return sorted(done, key=lambda t: metrics.as_cost(direction, t.values[0]))


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial (single objective) or the Pareto front, best first objective first."""
    try:
        front = study.best_trials
    except ValueError:
        return []
    direction = first_direction(study)
    return sorted(front, key=lambda t: metrics.as_cost(direction, t.values[0]))


def top_trials(study: optuna.Study, cfg: Config, n: int = 5) -> list[dict[str, Any]]:
    """The best ``n`` finished trials by the first objective (pruned ones by their summary)."""
    direction = metrics.DIRECTIONS[cfg.study.objectives[0]]
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        summary = t.user_attrs.get(tags.SUMMARY) or {}
        rows.append(
            {
                "trial": t.number,
                "dropout": t.params.get("model.dropout", cfg.model.dropout),
                "width": t.params.get("model.width", cfg.model.width),
                "val_auprc": summary.get(metrics.BEST_VAL_AUPRC, math.nan),
                "gap_loss": summary.get(metrics.BEST_GAP_LOSS, math.nan),
                "final_gap_loss": summary.get(metrics.FINAL_GAP_LOSS, math.nan),
                "objective": t.values[0] if t.values else math.nan,
                "state": t.state.name,
            }
        )

    def complete_first(row: dict[str, Any]) -> tuple[bool, float]:
        return row["state"] != "COMPLETE", metrics.as_cost(direction, _finite(row["objective"]))

    return sorted(rows, key=complete_first)[:n]


def _finite(x: float) -> float:
    return x if math.isfinite(x) else math.inf


def trial_name(number: int, overrides: Mapping[str, Any]) -> str:
    """``trial-007 p=0.31 w=128``: what the MLflow UI shows in its run list."""
    parts = [f"trial-{number:03d}"]
    if "model.dropout" in overrides:
        parts.append(f"p={overrides['model.dropout']:.2f}")
    if "model.width" in overrides:
        parts.append(f"w={overrides['model.width']}")
    return " ".join(parts)


@dataclass(frozen=True)
class TrialModel:
    """A trial's network with the weights it saved, its config and its data splits."""

    cfg: Config
    data: Dataset
    model: MLP


def load_trial_model(cfg: Config, tracker: Tracker, trial: FrozenTrial) -> TrialModel:
    """Rebuild ``trial``'s network and load the weights its run saved (``tags.MODEL_FILE``,
    the state its objective scored), on the CPU.

    Raises:
        RunNotFound: the null tracker (it stores nothing); a real store raises its own error
            for a missing artifact.
    """
    # with study.seeds, the trial saved its first seed's weights (trial.py, _save_model)
    seed = {"seed": cfg.study.seeds[0]} if cfg.study.seeds else {}
    trial_cfg = with_overrides(cfg, {**trial.params, **seed})
    data = prepare(trial_cfg.data, trial_cfg.seed)
    model = build_model(trial_cfg, data)
    with tempfile.TemporaryDirectory() as tmp:
        local = tracker.download(str(trial.user_attrs[tags.RUN_ID]), tags.MODEL_FILE, Path(tmp))
        model.load_state_dict(torch.load(local, map_location="cpu", weights_only=True))
    return TrialModel(trial_cfg, data, model)
