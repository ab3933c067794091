"""``study.seeds``: one trial trains every listed seed, and its value is their aggregate.

Every trial (the dropout-0 controls included) trains the same seeds, so the trials of a study
are paired by seed. The seeds of a trial share a shape: on CPU they train in lockstep as one
stacked model (:func:`droplab.fit.stack.members.fit_members`, each member equal to its own
``fit``), and the pruner hears the across-seed mean once per epoch, which may stop them all.
Where they cannot stack on CPU (bfloat16, other dropout kinds: configs that :func:`can_stack`
refuses) they still train in lockstep, each with its own model, one epoch of each in turn
(:func:`droplab.fit.stack.lockstep.fit_lockstep`, each equal to its own ``fit``), and are pruned
the same way. On CUDA they train one after another with ``fit``; the mean curve then exists
only once the last seed has trained, so it is reported to the pruner afterwards (other trials
are judged against it) and the trial is never pruned: pruning it then would throw away a
finished result, not save work.

MLflow: the trial run is opened first (so a dead worker's trial run is found and closed); a
stack's seed runs are created once the stack trained (as ``compare`` does), sequential ones as
each seed starts. The trial run gets the across-seed mean per epoch and, as summary, the mean
of each seed's summary with ``<key>_sem`` beside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import optuna
import torch

from droplab import metrics, tags
from droplab.config.load import with_overrides
from droplab.config.schema import Config
from droplab.data.splits import Dataset
from droplab.fit.stack.grouping import can_stack
from droplab.fit.stack.lockstep import can_lockstep, fit_lockstep
from droplab.fit.stack.members import GroupHook, MemberResult, fit_members
from droplab.fit.trainer import EpochHook, TrialStopped, resolve_device
from droplab.progress import epoch_bar
from droplab.study import space
from droplab.tracking.runs import (
    RunSpec,
    end_quietly,
    failure_reason,
    log_fitted,
    open_run,
    run_fit,
    stacked_spec,
)
from droplab.tracking.store import Tracker


class SeedFailed(RuntimeError):
    """A seed of the trial failed: the trial fails with this seed's reason."""


class _SeedLost(RuntimeError):
    """Stops the other members of a stack once one of them failed."""


@dataclass
class _Seed:
    """One seed's epochs, best weights, and the error that stopped it (if one did)."""

    seed: int
    history: list[dict[str, float]]
    best_state: dict[str, torch.Tensor]
    error: Exception | None = None
    stacked: int = 1  # members it trained with (1: alone, by fit, or in lockstep)
    lockstep: bool = False  # beside the others, epoch by epoch: the pruner heard each epoch


@dataclass
class SeededTrial:
    """What the seeds of one complete trial gave: the trial run, each seed's summary, the
    across-seed summary (means and ``_sem``), and the first seed's best weights."""

    run_id: str
    seeds: list[int]
    summaries: dict[int, dict[str, float]]
    summary: dict[str, float]
    best_state: dict[str, torch.Tensor] = field(default_factory=dict)

    def values(self, objectives: Sequence[str]) -> dict[int, list[float]]:
        """Each seed's objective values."""
        return {s: [self.summaries[s][o] for o in objectives] for s in self.seeds}


def seed_configs(cfg: Config) -> list[Config]:
    """The trial's config once per ``study.seeds`` seed."""
    return [with_overrides(cfg, {"seed": s}) for s in cfg.study.seeds or (cfg.seed,)]


def stacks(cfgs: Sequence[Config]) -> bool:
    """Whether the seeds train as one stack: on CPU, where the stack is exact, and stackable."""
    return len(cfgs) > 1 and resolve_device(cfgs[0].train.device).type == "cpu" and can_stack(cfgs)


def interleaved(cfgs: Sequence[Config]) -> bool:
    """Whether seeds that cannot stack train in lockstep all the same (on CPU: bfloat16, other
    dropout kinds, ...; :mod:`droplab.fit.stack.lockstep`), so the pruner hears every epoch."""
    return not stacks(cfgs) and can_lockstep(cfgs)


def aggregate(cfg: Config, per_seed: Mapping[int, Sequence[float]]) -> list[float]:
    """The trial's Optuna values: ``study.aggregate`` over seeds, objective by objective."""
    out = []
    for i, objective in enumerate(cfg.study.objectives):
        values = [v[i] for v in per_seed.values()]
        out.append(
            metrics.seed_aggregate(values, metrics.DIRECTIONS[objective], cfg.study.aggregate)
        )
    return out


def mean_summary(summaries: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each summary key's mean over seeds, with its standard error under ``<key>_sem``."""
    out: dict[str, float] = {}
    for key in summaries[0] if summaries else ():
        mean, sem = metrics.seed_mean([s[key] for s in summaries])
        out[key], out[metrics.sem_name(key)] = mean, sem
    return out


def mean_history(histories: Sequence[Sequence[Mapping[str, float]]]) -> list[dict[str, float]]:
    """The across-seed mean of every per-epoch key, for the epochs every seed reached."""
    epochs = min((len(h) for h in histories), default=0)
    return [
        {k: metrics.seed_mean([h[e][k] for h in histories])[0] for k in histories[0][e]}
        for e in range(epochs)
    ]


def train_seeds(
    cfg: Config,
    tracker: Tracker,
    spec: RunSpec,
    trial: optuna.Trial,
    data_for: Callable[[Config], Dataset],
    progress: bool = False,
    seed_hooks: Mapping[int, Sequence[EpochHook]] | None = None,
) -> SeededTrial:
    """Train every seed of the trial under its trial run and close the runs; ``seed_hooks``
    adds epoch hooks to some seeds (tests use them to fail one).

    Raises:
        TrialStopped: pruned on the across-seed mean (every run KILLED).
        SeedFailed: a seed failed (its run and the trial run FAILED with its reason).
    """
    cfgs = seed_configs(cfg)
    datas = [data_for(c) for c in cfgs]
    stacked = stacks(cfgs)
    labels = {
        tags.VECTORIZED: str(stacked).lower(),
        tags.STACK_SIZE: str(len(cfgs) if stacked else 1),
    }
    run_id = open_run(cfg, tracker, datas[0], _with_tags(spec, labels))
    seed_runs: dict[int, str] = {}
    try:
        prunes = cfg.study.pruner != "none" and len(cfg.study.objectives) == 1
        spec_of = _seed_spec(spec, run_id, seed_runs)
        hooks = [list((seed_hooks or {}).get(c.seed, ())) for c in cfgs]
        if progress:
            hooks[0].append(epoch_bar(cfg.train.epochs, f"{len(cfgs)} seeds, seed {cfgs[0].seed}"))
        group = _mean_pruner(cfg, trial) if prunes else None
        if group is not None and len(cfgs) == 1:  # one seed: its own curve is the mean
            hooks[0].append(lambda epoch, values: group(epoch, {0: values}))
        if stacked or interleaved(cfgs):
            fit_all = fit_members if stacked else fit_lockstep
            results = _stack(cfgs, datas, tracker, spec_of, group, hooks, fit_all)
        else:
            results = _one_by_one(cfgs, datas, tracker, spec_of, hooks)
        trial.set_user_attr(tags.SEED_RUNS, {str(s): r for s, r in seed_runs.items()})
        if stacked and results[0].stacked == 1:  # no exact stack here: fit_members went alone
            tracker.set_tags(run_id, {tags.VECTORIZED: "false", tags.STACK_SIZE: "1"})
        after = prunes and len(cfgs) > 1 and results[0].stacked == 1 and not results[0].lockstep
        return _close_trial(cfg, tracker, trial, run_id, results, after)
    except BaseException as exc:
        if not isinstance(exc, TrialStopped | SeedFailed):  # those closed the run themselves
            end_quietly(tracker, run_id, tags.FAILED, tags.FAIL, failure_reason(exc))
        raise


def _with_tags(spec: RunSpec, labels: Mapping[str, str]) -> RunSpec:
    return replace(spec, tags={**spec.tags, **labels})


def _seed_spec(
    trial_spec: RunSpec, run_id: str, seed_runs: dict[int, str]
) -> Callable[[int], RunSpec]:
    """Each seed's run spec: a child of the trial run, tagged as a compare seed run is."""

    def spec(seed: int) -> RunSpec:
        labels = {**trial_spec.tags, tags.SEED: str(seed)}
        if trial_spec.parent_id is not None:
            labels[tags.STUDY_RUN] = trial_spec.parent_id
        return RunSpec(
            kind=tags.KIND_SEED,
            name=f"seed-{seed}",
            parent_id=run_id,
            tags=labels,
            on_start=lambda rid: seed_runs.__setitem__(seed, rid),
            activations=False,
        )

    return spec


def _stack(
    cfgs: Sequence[Config],
    datas: Sequence[Dataset],
    tracker: Tracker,
    spec_of: Callable[[int], RunSpec],
    group: GroupHook | None,
    hooks: Sequence[Sequence[EpochHook]],
    fit_all: Callable[..., list[MemberResult]] = fit_members,
) -> list[_Seed]:
    """The seeds as one stack (``fit_members``) or in lockstep (``fit_lockstep``)."""
    started = time.time()
    results: list[MemberResult] = fit_all(cfgs, hooks, datas, group_hook=group)
    out = []
    for c, r in zip(cfgs, results, strict=True):
        spec = spec_of(c.seed)
        if r.stacked > 1:  # else fit_members trained them one by one: no stack to date
            spec = stacked_spec(spec, r.stacked, started, started + r.seconds)
        try:
            log_fitted(c, tracker, spec, r, r.error)
        except Exception as exc:
            if exc is not r.error:  # the store failed, not the member
                raise
        out.append(_Seed(c.seed, r.history, dict(r.best_state), r.error, r.stacked, r.lockstep))
    return out


def _one_by_one(
    cfgs: Sequence[Config],
    datas: Sequence[Dataset],
    tracker: Tracker,
    spec_of: Callable[[int], RunSpec],
    hooks: Sequence[Sequence[EpochHook]],
) -> list[_Seed]:
    """Each seed alone with ``fit``; the first failure stops the trial (the rest would be
    wasted: one failed seed fails the trial)."""
    out = []
    for c, d, own in zip(cfgs, datas, hooks, strict=True):
        seen: list[dict[str, float]] = []
        try:
            record = [lambda _, values: seen.append(dict(values))]  # noqa: B023 - called now
            tracked = run_fit(c, tracker, spec_of(c.seed), hooks=[*record, *own], data=d)
        except Exception as exc:  # noqa: BLE001 - closed by run_fit; fails or prunes the trial
            out.append(_Seed(c.seed, seen, {}, exc))
            break
        out.append(_Seed(c.seed, tracked.result.history, dict(tracked.result.best_state)))
    return out


class _MeanOfSeeds:
    """The objective's per-epoch value over seeds: the mean of each seed's value (for a
    running-best objective, of each seed's best so far: at the last epoch, the trial's mean
    objective)."""

    def __init__(self, cfg: Config) -> None:
        self.source, self.running_best = metrics.EPOCH_SOURCE[cfg.study.objectives[0]]
        self.best: dict[int, float] = {}

    def __call__(self, records: Mapping[int, Mapping[str, float]]) -> float:
        for i, values in records.items():
            value = values[self.source]
            if not self.running_best or metrics.is_better(self.source, value, self.best.get(i)):
                self.best[i] = value
        return metrics.seed_mean([self.best[i] for i in records])[0]


def _mean_pruner(cfg: Config, trial: optuna.Trial) -> GroupHook:
    """Report the across-seed mean once per epoch; stop every seed when the pruner says so,
    or when one of them failed."""
    n = len(cfg.study.seeds or ())
    mean_of = _MeanOfSeeds(cfg)

    def report(epoch: int, records: Mapping[int, Mapping[str, float]]) -> None:
        if len(records) < n:
            raise _SeedLost(f"stopped at epoch {epoch}: another seed of the trial failed")
        mean = mean_of(records)
        label = f"mean {mean_of.source} over {n} seeds={mean:.4f}"
        space.report_epoch(trial, epoch, mean, label)

    return report


def _close_trial(
    cfg: Config,
    tracker: Tracker,
    trial: optuna.Trial,
    run_id: str,
    results: Sequence[_Seed],
    report_after: bool,
) -> SeededTrial:
    """The trial run's mean curve and summary, and its end: FINISHED, KILLED or FAILED."""
    histories = [r.history for r in results if r.history]
    curve = mean_history(histories)
    for epoch, values in enumerate(curve, start=1):
        tracker.log_epoch(run_id, values, step=epoch)  # one log_batch per epoch
    tracker.flush()
    monitor = cfg.train.monitor
    summaries = {r.seed: metrics.summarize(r.history, monitor) for r in results if r.history}
    summary = mean_summary(list(summaries.values()))
    errors = [(r.seed, r.error) for r in results if r.error is not None]
    failed = [(s, e) for s, e in errors if not isinstance(e, TrialStopped | _SeedLost)]
    if failed:
        seed, exc = failed[0]
        reason = f"seed {seed}: {failure_reason(exc)}"
        end_quietly(tracker, run_id, tags.FAILED, tags.FAIL, reason)
        raise SeedFailed(reason)
    tracker.log_metrics(run_id, summary)
    if errors:  # every seed was stopped by the pruner on the mean
        reason = str(errors[0][1])
        tracker.end(run_id, tags.KILLED, tags.PRUNED, reason)
        raise TrialStopped(reason)
    if report_after:  # one by one: the pruner hears the mean curve only now, and prunes nothing
        _report_curve(cfg, trial, histories)
    tracker.end(run_id, tags.FINISHED, tags.COMPLETE)
    seeds = [r.seed for r in results]
    return SeededTrial(run_id, seeds, summaries, summary, results[0].best_state)


def _report_curve(
    cfg: Config, trial: optuna.Trial, histories: Sequence[list[dict[str, float]]]
) -> None:
    mean_of = _MeanOfSeeds(cfg)
    for e in range(min(len(h) for h in histories)):
        trial.report(mean_of(dict(enumerate(h[e] for h in histories))), e + 1)
