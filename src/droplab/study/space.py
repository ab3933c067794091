"""Search space, samplers and pruners, built from config by code you can grep.

``suggest(trial, space)`` is a pure function of the trial and the ``study.space`` mapping: it
returns dotted config overrides, so a suggested value is just one more override.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import optuna

from droplab import metrics
from droplab.config.identity import to_dict
from droplab.config.params import Param
from droplab.config.schema import Config
from droplab.fit.trainer import TrialStopped


def suggest(trial: optuna.trial.BaseTrial, space: Mapping[str, Param]) -> dict[str, Any]:
    """Draw one value per key of ``space`` from ``trial``; returns ``{dotted_key: value}``."""
    return {key: param.suggest(trial, key) for key, param in space.items()}


def fingerprint(cfg: Config) -> str:
    """What a study's stored trials depend on: the space and the objectives, and with
    ``study.seeds`` the seeds and their aggregate (JSON, sorted)."""
    stored: dict[str, Any] = {
        "space": to_dict(cfg.study)["space"],
        "objectives": list(cfg.study.objectives),
    }
    if cfg.study.seeds is not None:  # absent otherwise: studies made before seeds still match
        stored.update(seeds=list(cfg.study.seeds), aggregate=cfg.study.aggregate)
    return json.dumps(stored, sort_keys=True)


def directions(cfg: Config) -> list[optuna.study.StudyDirection]:
    return [
        optuna.study.StudyDirection[metrics.DIRECTIONS[o].upper()] for o in cfg.study.objectives
    ]


def grid(space: Mapping[str, Param]) -> dict[str, list[Any]]:
    """The grid sampler's values: categorical choices, or ranges with a ``step``.

    Raises:
        ConfigError: a range without a step (no finite grid).
    """
    values = {key: param.grid_values(key) for key, param in space.items()}
    return {key: v for key, v in values.items() if v is not None}


def sampler(cfg: Config, worker: int = 0) -> optuna.samplers.BaseSampler:
    """The seeded sampler ``study.sampler`` names (seed: ``study.sampler_seed`` or ``seed``).

    Worker processes offset the seed by their index, or they would all propose the same point.
    """
    s = optuna.samplers
    base = cfg.study.sampler_seed if cfg.study.sampler_seed is not None else cfg.seed
    seed = base + 7919 * worker
    name = cfg.study.sampler
    if name == "random":
        return s.RandomSampler(seed=seed)
    if name == "qmc":
        return s.QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
    if name == "grid":
        return s.GridSampler(grid(cfg.study.space), seed=seed)
    if name == "gp":
        return s.GPSampler(seed=seed)
    if name == "cmaes":
        return s.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "nsga2":
        return s.NSGAIISampler(seed=seed)
    return s.TPESampler(seed=seed, multivariate=True)


def pruner(cfg: Config) -> optuna.pruners.BasePruner:
    """The pruner ``study.pruner`` names; one report per epoch is one unit of resource."""
    p, st = optuna.pruners, cfg.study
    if st.pruner == "median":
        return p.MedianPruner(n_startup_trials=st.startup_trials, n_warmup_steps=st.warmup_epochs)
    if st.pruner == "hyperband":
        return p.HyperbandPruner(
            min_resource=max(1, st.warmup_epochs), max_resource=cfg.train.epochs
        )
    if st.pruner == "successive_halving":
        return p.SuccessiveHalvingPruner(min_resource=max(1, st.warmup_epochs))
    return p.NopPruner()


def baseline_params(cfg: Config) -> list[dict[str, Any]]:
    """Dropout-0 controls at representative widths: ``study.baseline_widths`` or the space's
    low, geometric middle and high."""
    space = cfg.study.space
    if "model.dropout" not in space:
        return []
    widths = list(cfg.study.baseline_widths)
    if not widths and "model.width" in space:
        widths = space["model.width"].baseline_values()
    if not widths:
        widths = [cfg.model.width]
    rows = [{"model.dropout": 0.0, "model.width": w} for w in widths]
    return [{k: v for k, v in row.items() if k in space} for row in rows]


def report_epoch(trial: optuna.Trial, epoch: int, value: float, label: str) -> None:
    """Report the objective's value at ``epoch``; raise :class:`TrialStopped` when the pruner
    says so (``label`` says what was seen, for the run's reason)."""
    trial.report(value, epoch)
    if trial.should_prune():
        raise TrialStopped(f"pruned at epoch {epoch} ({label})")
