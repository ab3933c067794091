"""``droplab study``: create or resume an Optuna study of dropout x width, one MLflow run a trial.

Reads top to bottom in :func:`run`: check storage and data (bad input writes nothing), open the
study and its MLflow parent run, recover trials of dead workers, enqueue the dropout-0
controls, run the workers, then summarise the study on its parent run.
"""

from __future__ import annotations

import time
import warnings

import optuna
from optuna.trial import TrialState

from droplab import tags
from droplab.config.identity import mask_secrets
from droplab.config.paths import study_name
from droplab.config.schema import Config, ConfigError
from droplab.data.splits import prepare
from droplab.fit.cores import worker_count
from droplab.fit.trainer import check_monitor
from droplab.study import space, storage
from droplab.study.close import StudyOutcome, summarize_study
from droplab.study.trial import WorkerSpec, run_closer
from droplab.study.workers import run_processes, work
from droplab.tracking.connect import make_tracker
from droplab.tracking.provenance import run_params
from droplab.tracking.runs import end_quietly, failure_reason, reconcile_runs
from droplab.tracking.store import Tracker


def run(cfg: Config, progress: bool = False) -> StudyOutcome:
    """Create or resume the study ``study.name`` and run it to ``study.n_trials`` finished."""
    start = time.perf_counter()
    url = storage.check_storage(cfg)
    data = prepare(cfg.data, cfg.seed)  # bad data: exit 2 before any study or run exists
    check_monitor(cfg, data)
    storage.probe(url)  # an unreachable storage too, before the MLflow store is created
    tracker = make_tracker(cfg)  # and an unreachable tracking server
    study = open_study(cfg, url)
    parent_id = _parent_run(cfg, study, tracker, url)
    storage.recover_stale(study, run_closer(tracker))
    if parent_id is not None:
        states = {str(t.number): t.state.name for t in study.get_trials(deepcopy=False)}
        reconcile_runs(tracker, parent_id, states)
        if cfg.study.seeds:  # the seed runs under the trial runs, found by their study tag
            seed_runs = {tags.STUDY_RUN: parent_id, tags.KIND: tags.KIND_SEED}
            reconcile_runs(tracker, parent_id, states, where=seed_runs)
    _enqueue_baselines(cfg, study, url)
    remaining = max(0, cfg.study.n_trials - storage.slots_taken(study))
    # Trials already started before this invocation (enqueued controls are not started yet).
    before = {t.number for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING}
    try:
        worker = WorkerSpec(cfg, url, parent_id, max_attempts=remaining, progress=progress)
        if worker_count(cfg) > 1 and remaining > 0:
            run_processes(worker, study, tracker, data)
        elif remaining > 0:
            work(worker, study, tracker, data)
    except BaseException as exc:
        if parent_id is not None:  # quietly: when the store is down, the first error wins
            reason = failure_reason(exc)
            end_quietly(tracker, parent_id, tags.KILLED, tags.FAIL, reason)
        raise
    return _finish(cfg, study, tracker, parent_id, url, before, time.perf_counter() - start)


def open_study(cfg: Config, url: str) -> optuna.Study:
    """Create the study or load it, refusing a changed search space or objective list."""
    name = study_name(cfg)
    heartbeat = None if storage.is_journal(url) else cfg.study.heartbeat_seconds
    backend = storage.open_storage(url, heartbeat)
    study = optuna.create_study(
        storage=backend,
        study_name=name,
        directions=space.directions(cfg),
        sampler=space.sampler(cfg, shared=storage.shared(cfg, url)),
        pruner=space.pruner(cfg),
        load_if_exists=True,
    )
    fingerprint = space.fingerprint(cfg)
    stored = study.user_attrs.get(tags.SPACE)
    if stored is None:
        study.set_user_attr(tags.SPACE, fingerprint)
        study.set_user_attr(tags.OBJECTIVES, list(cfg.study.objectives))
        with warnings.catch_warnings():  # experimental in Optuna; optuna-dashboard shows them
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(cfg.study.objectives))
    elif stored != fingerprint:
        raise ConfigError(
            f"study '{name}' in {mask_secrets(url)} was created with another search space or "
            f"objectives ({stored}); keep them, or choose a new study.name"
        )
    return study


def _parent_run(cfg: Config, study: optuna.Study, tracker: Tracker, url: str) -> str | None:
    """The study's MLflow parent run: created once, reopened when the study resumes."""
    if not cfg.tracking.enabled:
        return None
    # Workers that start together must not each create one: look and create under the lock.
    with storage.slot_lock(study, url, cfg):
        existing = study.user_attrs.get(tags.PARENT_RUN)
        if existing:
            tracker.reopen(existing)
            return str(existing)
        labels = {tags.STUDY_NAME_TAG: study.study_name, tags.STORAGE_TAG: mask_secrets(url)}
        run_id = tracker.start(f"study-{study.study_name}", tags.KIND_STUDY, labels, None)
        # The searched keys are each trial's own values: on the parent they would pose as one.
        params = run_params(cfg)
        tracker.log_params(run_id, {k: v for k, v in params.items() if k not in cfg.study.space})
        study.set_user_attr(tags.PARENT_RUN, run_id)
    return run_id


def _enqueue_baselines(cfg: Config, study: optuna.Study, url: str) -> None:
    if not cfg.study.baselines:
        return
    with storage.slot_lock(study, url, cfg):  # once, not per worker
        if study.user_attrs.get(tags.BASELINES_QUEUED):
            return
        for params in space.baseline_params(cfg):
            study.enqueue_trial(params, user_attrs={tags.BASELINE: True}, skip_if_exists=True)
        study.set_user_attr(tags.BASELINES_QUEUED, True)


def _finish(
    cfg: Config,
    study: optuna.Study,
    tracker: Tracker,
    parent_id: str | None,
    url: str,
    before: set[int],
    seconds: float,
) -> StudyOutcome:
    """Summarise the study on its parent run (metrics, config, report, best model)."""
    new = [t for t in study.get_trials(deepcopy=False) if t.number not in before]
    return summarize_study(cfg, study, tracker, parent_id, url, new, seconds)
