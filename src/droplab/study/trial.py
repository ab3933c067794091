"""One trial: suggest its overrides, train it inside its MLflow child run, tell Optuna."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from droplab import metrics, tags
from droplab.config.load import with_overrides
from droplab.config.schema import Config, ConfigError
from droplab.data.splits import Dataset, prepare
from droplab.fit.trainer import EpochHook, TrialStopped
from droplab.optuna_compat import heartbeat
from droplab.progress import epoch_bar
from droplab.study import seeds, space
from droplab.study.close import StudyFailed
from droplab.study.trials import first_direction, trial_name
from droplab.tracking.connect import check_server
from droplab.tracking.runs import RunSpec, failure_reason, run_fit
from droplab.tracking.store import Tracker


@dataclass
class WorkerSpec:
    """Everything a worker process needs to run trials of one study."""

    cfg: Config
    url: str
    parent_id: str | None
    max_attempts: int
    progress: bool = False
    datasets: dict[int, Dataset] = field(default_factory=dict)  # study.seeds: splits by seed
    seed_hooks: Mapping[int, Sequence[EpochHook]] = field(default_factory=dict)  # tests


@dataclass
class _Trained:
    """What a trial's training left to tell Optuna: its run, summary, values, best weights."""

    run_id: str
    summary: dict[str, float]
    values: list[float]
    best_state: dict[str, torch.Tensor]


def run_trial(
    worker: WorkerSpec,
    study: optuna.Study,
    trial: optuna.Trial,
    tracker: Tracker,
    data: Dataset,
) -> TrialState:
    """Train one trial inside its MLflow child run and tell Optuna how it ended."""
    overrides = space.suggest(trial, worker.cfg.study.space)
    cfg = with_overrides(worker.cfg, overrides)
    # a trial that changes the data or the seed prepares its own
    trial_data = None if any(k.startswith("data.") or k == "seed" for k in overrides) else data
    hooks = [_pruning_hook(cfg, trial)] if _prunes(cfg) and not cfg.study.seeds else []
    if worker.progress and not cfg.study.seeds:
        hooks.append(epoch_bar(cfg.train.epochs, f"trial {trial.number}"))
    spec = RunSpec(
        kind=tags.KIND_TRIAL,
        name=trial_name(trial.number, overrides),
        parent_id=worker.parent_id,
        tags={tags.STUDY_NAME_TAG: study.study_name, tags.TRIAL_NUMBER_TAG: str(trial.number)},
        on_start=lambda run_id: trial.set_user_attr(tags.RUN_ID, run_id),
        activations=False,  # drawn for the best trial only, when the study closes
    )
    try:
        with heartbeat(study, trial):
            if cfg.study.seeds:
                trained = _train_seeds(worker, cfg, tracker, spec, trial, overrides)
            else:
                tracked = run_fit(cfg, tracker, spec, hooks=hooks, data=trial_data)
                summary, best_state = tracked.result.summary, dict(tracked.result.best_state)
                values = [summary.get(o, math.nan) for o in cfg.study.objectives]
                trained = _Trained(tracked.run_id, summary, values, best_state)
    except TrialStopped:
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED
    except BaseException as exc:
        trial.set_user_attr(tags.FAIL_REASON, failure_reason(exc))
        study.tell(trial, state=TrialState.FAIL)
        if not isinstance(exc, Exception):
            raise  # interrupts stop the study; the trial is FAIL and its run FAILED
        lost = _tracking_lost(tracker)
        if lost is not None:  # every next trial would fail the same way: stop here
            raise StudyFailed(
                f"{lost} (lost during trial {trial.number}, now FAIL); finished trials are "
                "kept: run the same command again once the tracking server answers"
            ) from None
        return TrialState.FAIL
    return _tell_complete(cfg, study, trial, tracker, trained)


def _train_seeds(
    worker: WorkerSpec,
    cfg: Config,
    tracker: Tracker,
    spec: RunSpec,
    trial: optuna.Trial,
    overrides: Mapping[str, object],
) -> _Trained:
    """Every ``study.seeds`` seed of the trial; the values are their aggregate."""
    own_data = any(k.startswith("data.") for k in overrides)

    def data_for(seed_cfg: Config) -> Dataset:
        if own_data:
            return prepare(seed_cfg.data, seed_cfg.seed)
        if seed_cfg.seed not in worker.datasets:
            worker.datasets[seed_cfg.seed] = prepare(seed_cfg.data, seed_cfg.seed)
        return worker.datasets[seed_cfg.seed]

    done = seeds.train_seeds(
        cfg, tracker, spec, trial, data_for, worker.progress, worker.seed_hooks
    )
    per_seed = done.values(cfg.study.objectives)
    trial.set_user_attr(tags.SEED_VALUES, {str(s): v for s, v in per_seed.items()})
    trial.set_user_attr(tags.SEED_SUMMARIES, {str(s): v for s, v in done.summaries.items()})
    values = seeds.aggregate(cfg, per_seed)
    return _Trained(done.run_id, done.summary, values, done.best_state)


def _tracking_lost(tracker: Tracker) -> str | None:
    """Why the tracking server no longer answers (None: it does, or there is none)."""
    if not tracker.uri.startswith(("http://", "https://")):
        return None
    try:
        check_server(tracker.uri)
    except ConfigError as exc:
        return str(exc)
    return None


def _tell_complete(
    cfg: Config,
    study: optuna.Study,
    trial: optuna.Trial,
    tracker: Tracker,
    trained: _Trained,
) -> TrialState:
    values = trained.values
    trial.set_user_attr(tags.SUMMARY, trained.summary)
    bad = [o for o, v in zip(cfg.study.objectives, values, strict=True) if not math.isfinite(v)]
    if bad:
        reason = f"objective {bad[0]} is {values[cfg.study.objectives.index(bad[0])]}"
        trial.set_user_attr(tags.FAIL_REASON, reason)
        tracker.end(trained.run_id, tags.FAILED, tags.FAIL, reason)
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    if _worth_keeping(study, values):
        _save_model(tracker, trained)
        trial.set_user_attr(tags.MODEL, tags.MODEL_FILE)
    study.tell(trial, values)
    return TrialState.COMPLETE


def _worth_keeping(study: optuna.Study, values: list[float]) -> bool:
    """Keep the model of a new best trial (single objective) or of every trial (Pareto)."""
    if len(values) > 1:
        return True
    try:
        best = study.best_value
    except ValueError:  # no complete trial yet
        return True
    direction = first_direction(study)
    return metrics.as_cost(direction, values[0]) < metrics.as_cost(direction, best)


def _save_model(tracker: Tracker, trained: _Trained) -> None:
    """The weights the objective scored (with ``study.seeds``, the first seed's)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / tags.MODEL_FILE
        torch.save(trained.best_state, path)
        tracker.log_artifact(trained.run_id, path)


def _prunes(cfg: Config) -> bool:
    return cfg.study.pruner != "none" and len(cfg.study.objectives) == 1


def _pruning_hook(cfg: Config, trial: optuna.Trial) -> EpochHook:
    """Report the objective's per-epoch value once per epoch; stop when the pruner says so."""
    objective = cfg.study.objectives[0]
    source, running_best = metrics.EPOCH_SOURCE[objective]
    best: list[float] = []

    def report(epoch: int, values: Mapping[str, float]) -> None:
        value = values[source]
        if running_best and best and not metrics.is_better(source, value, best[-1]):
            value = best[-1]
        best.append(value)
        space.report_epoch(trial, epoch, value, f"{source}={values[source]:.4f}")

    return report


def run_closer(tracker: Tracker) -> Callable[[FrozenTrial, str], None]:
    """What ``storage.recover_stale`` calls for a trial it failed: close its MLflow run FAILED."""

    def close(trial: FrozenTrial, reason: str) -> None:
        run_id = trial.user_attrs.get(tags.RUN_ID)
        if run_id:
            # with study.seeds, the seed runs the dead worker left open under it too
            for child in tracker.find_runs({tags.PARENT: str(run_id)}, status=tags.RUNNING):
                tracker.end(child.id, tags.FAILED, tags.FAIL, reason)
            tracker.end(str(run_id), tags.FAILED, tags.FAIL, reason)

    return close
