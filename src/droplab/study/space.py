"""Search space, samplers and pruners, built from config by code you can grep.

``suggest(trial, space)`` is a pure function of the trial and the ``study.space`` mapping: it
returns dotted config overrides, so a suggested value is just one more override.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

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


def sampler(cfg: Config, shared: bool = False) -> optuna.samplers.BaseSampler:
    """The seeded sampler ``study.sampler`` names (seed: ``study.sampler_seed`` or ``seed``).

    ``shared``: other processes ask the same study (``study.workers`` > 1, or a storage that
    other machines can reach). Each trial's proposal then comes from a sampler seeded with
    (seed, trial number), whichever process asks, so processes that start together do not
    propose the same point and a study explores the same way on any number of workers.
    One process alone keeps one sampler, seeded at the first trial it asks: a new study's
    first process proposes what it always did, and a resumed one does not repeat it.
    QMC needs neither: its processes share one seed (one scrambled sequence, indexed by the
    study, so it also resumes where it stopped).
    """
    base = cfg.study.sampler_seed if cfg.study.sampler_seed is not None else cfg.seed
    if cfg.study.sampler == "qmc":
        return _seeded(cfg, base)
    return TrialSeeded(lambda seed: _seeded(cfg, seed), base, per_trial=shared)


def trial_seed(seed: int, number: int) -> int:
    """The seed of a sampler made at trial ``number``; trial 0 keeps ``seed`` itself."""
    if number == 0:
        return seed
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _seeded(cfg: Config, seed: int) -> optuna.samplers.BaseSampler:
    s = optuna.samplers
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
    # constant_liar: a trial that another worker is running counts as a poor result, so
    # workers do not all propose near the same promising point (Optuna's default since 5.0;
    # alone, the only running trial is the one being proposed, which TPE leaves out).
    return s.TPESampler(seed=seed, multivariate=True, constant_liar=True)


class TrialSeeded(optuna.samplers.BaseSampler):
    """A sampler made at a trial, seeded with :func:`trial_seed`: afresh for every trial
    (``per_trial``), or once, at the first trial this process asks.

    Optuna's samplers keep their state in the study (its trials and their attributes), apart
    from their random generator and caches of what the study holds: making one at a trial
    chooses where that generator starts.
    Without this, a resumed study's new process starts it where the first one did and
    proposes the first process's random start-up points again, one by one.
    """

    def __init__(
        self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int, per_trial: bool
    ) -> None:
        self._make, self._seed, self._per_trial = make, seed, per_trial
        self._number: int | None = None
        self._inner: optuna.samplers.BaseSampler | None = None

    def _for(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        if self._inner is None or (self._per_trial and trial.number != self._number):
            self._inner = self._make(trial_seed(self._seed, trial.number))
            self._number = trial.number
        return self._inner

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._for(trial).after_trial(study, trial, state, values)


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
