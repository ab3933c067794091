"""``droplab study``: create or resume an Optuna study of dropout x width, one MLflow run a trial.

Reads top to bottom in :func:`run`: check storage and data (bad input writes nothing), open the
study and its MLflow parent run, recover trials of dead workers, enqueue the dropout-0
controls, run the workers, then summarise the study on its parent run.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import socket
import tempfile
import time
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from droplab import config as C
from droplab import metrics, space, storage, tracking
from droplab.config import Config, ConfigError
from droplab.data import Dataset, prepare
from droplab.interrupts import install as install_interrupt_handlers
from droplab.study_summary import MODEL, MODEL_FILE, SUMMARY, StudyFailed, StudyOutcome
from droplab.training import EpochHook, TrialStopped, progress_bar, thread_count

PARENT_RUN = "droplab.parent_run_id"
SPACE = "droplab.space"
OBJECTIVES = "droplab.objectives"
BASELINES_QUEUED = "droplab.baselines_enqueued"
BASELINE = "droplab.baseline"
STUDY_NAME_TAG = "optuna.study_name"
TRIAL_NUMBER_TAG = "optuna.trial_number"

optuna.logging.set_verbosity(optuna.logging.WARNING)
# droplab runs its own ask/tell loop and keeps the heartbeat thread itself.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


@dataclass
class _Worker:
    """Everything a worker process needs to run trials of one study."""

    cfg: Config
    url: str
    parent_id: str | None
    max_attempts: int
    progress: bool = False


def run(cfg: Config, progress: bool = False) -> StudyOutcome:
    """Create or resume the study ``study.name`` and run it to ``study.n_trials`` finished."""
    start = time.perf_counter()
    url = storage.check_storage(cfg)
    data = prepare(cfg.data, cfg.seed)  # bad data: exit 2 before any study or run exists
    storage.probe(url)  # an unreachable storage too, before the MLflow store is created
    tracker = tracking.make_tracker(cfg)  # and an unreachable tracking server
    study = open_study(cfg, url)
    parent_id = _parent_run(cfg, study, tracker, url)
    storage.recover_stale(study, _closer(tracker))
    if parent_id is not None:
        states = {str(t.number): t.state.name for t in study.get_trials(deepcopy=False)}
        tracking.reconcile_runs(tracker, parent_id, states)
    _enqueue_baselines(cfg, study, url)
    remaining = max(0, cfg.study.n_trials - storage.slots_taken(study))
    # Trials already started before this invocation (enqueued controls are not started yet).
    before = {t.number for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING}
    try:
        worker = _Worker(cfg, url, parent_id, max_attempts=remaining, progress=progress)
        if cfg.study.workers > 1 and remaining > 0:
            _run_processes(worker, study, progress)
        elif remaining > 0:
            _work(worker, study, tracker, data)
    except BaseException as exc:
        if parent_id is not None:  # quietly: when the store is down, the first error wins
            reason = tracking.failure_reason(exc)
            tracking.end_quietly(tracker, parent_id, tracking.KILLED, tracking.FAIL, reason)
        raise
    return _finish(cfg, study, tracker, parent_id, url, before, time.perf_counter() - start)


def open_study(cfg: Config, url: str) -> optuna.Study:
    """Create the study or load it, refusing a changed search space or objective list."""
    name = C.study_name(cfg)
    heartbeat = None if storage.is_journal(url) else cfg.study.heartbeat_seconds
    backend = storage.open_storage(url, heartbeat)
    study = optuna.create_study(
        storage=backend,
        study_name=name,
        directions=space.directions(cfg),
        sampler=space.sampler(cfg, worker=_sampler_worker(url)),
        pruner=space.pruner(cfg),
        load_if_exists=True,
    )
    fingerprint = space.fingerprint(cfg)
    stored = study.user_attrs.get(SPACE)
    if stored is None:
        study.set_user_attr(SPACE, fingerprint)
        study.set_user_attr(OBJECTIVES, list(cfg.study.objectives))
        with warnings.catch_warnings():  # experimental in Optuna; optuna-dashboard shows them
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(cfg.study.objectives))
    elif stored != fingerprint:
        raise ConfigError(
            f"study '{name}' in {C.mask_secrets(url)} was created with another search space or "
            f"objectives ({stored}); keep them, or choose a new study.name"
        )
    return study


def _sampler_worker(url: str) -> int:
    """The sampler's seed offset: 0 on SQLite (one machine, reproducible); elsewhere one per
    process, or machines that start together propose the same points. A shared study is not
    reproducible anyway: which worker takes which trial depends on timing."""
    if url.startswith("sqlite:"):
        return 0
    return 1 + zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode()) % 100_003


def _parent_run(
    cfg: Config, study: optuna.Study, tracker: tracking.Tracker, url: str
) -> str | None:
    """The study's MLflow parent run: created once, reopened when the study resumes."""
    if not cfg.tracking.enabled:
        return None
    # Workers that start together must not each create one: look and create under the lock.
    with storage.slot_lock(study._storage, url, study.study_name, cfg):
        existing = study.user_attrs.get(PARENT_RUN)
        if existing:
            tracker.reopen(existing)
            return str(existing)
        tags = {STUDY_NAME_TAG: study.study_name, "droplab.storage": C.mask_secrets(url)}
        run_id = tracker.start(f"study-{study.study_name}", "study", tags, None)
        # The searched keys are each trial's own values: on the parent they would pose as one.
        params = tracking.run_params(cfg)
        tracker.log_params(run_id, {k: v for k, v in params.items() if k not in cfg.study.space})
        study.set_user_attr(PARENT_RUN, run_id)
    return run_id


def _closer(tracker: tracking.Tracker) -> Any:
    def close(trial: FrozenTrial, reason: str) -> None:
        run_id = trial.user_attrs.get(storage.RUN_ID)
        if run_id:
            tracker.end(str(run_id), tracking.FAILED, tracking.FAIL, reason)

    return close


def _enqueue_baselines(cfg: Config, study: optuna.Study, url: str) -> None:
    if not cfg.study.baselines:
        return
    with storage.slot_lock(study._storage, url, study.study_name, cfg):  # once, not per worker
        if study.user_attrs.get(BASELINES_QUEUED):
            return
        for params in space.baseline_params(cfg):
            study.enqueue_trial(params, user_attrs={BASELINE: True}, skip_if_exists=True)
        study.set_user_attr(BASELINES_QUEUED, True)


def _work(w: _Worker, study: optuna.Study, tracker: tracking.Tracker, data: Dataset) -> None:
    """The worker loop: take a slot under the lock, run the trial, until n_trials are taken."""
    bar = _trial_bar(w.max_attempts) if w.progress else None
    for _ in range(w.max_attempts):
        with storage.slot_lock(study._storage, w.url, study.study_name, w.cfg):
            storage.recover_stale(study, _closer(tracker))
            if storage.slots_taken(study) >= w.cfg.study.n_trials:
                break
            trial = study.ask()
            storage.claim(trial)
        state = run_trial(w, study, trial, tracker, data)
        if bar is not None:
            bar.set_postfix_str(f"trial {trial.number} {state.name}")
            bar.update(1)
    if bar is not None:
        bar.close()


def run_trial(
    w: _Worker,
    study: optuna.Study,
    trial: optuna.Trial,
    tracker: tracking.Tracker,
    data: Dataset,
) -> TrialState:
    """Train one trial inside its MLflow child run and tell Optuna how it ended."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    overrides = space.suggest(trial, w.cfg.study.space)
    cfg = C.with_overrides(w.cfg, overrides)
    touches_data = any(k.startswith("data.") or k == "seed" for k in overrides)
    hooks = [_pruning_hook(cfg, trial)] if _prunes(cfg) else []
    if w.progress:
        hooks.append(progress_bar(cfg.train.epochs, f"trial {trial.number}"))
    tags = {STUDY_NAME_TAG: study.study_name, TRIAL_NUMBER_TAG: str(trial.number)}
    try:
        with get_heartbeat_thread(trial._trial_id, study._storage):
            tracked = tracking.run_fit(
                cfg,
                tracker,
                kind="trial",
                name=trial_name(trial.number, overrides),
                parent_id=w.parent_id,
                tags=tags,
                hooks=hooks,
                data=None if touches_data else data,
                activations=False,  # drawn for the best trial only, when the study closes
                on_start=lambda run_id: trial.set_user_attr(storage.RUN_ID, run_id),
            )
    except TrialStopped:
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED
    except BaseException as exc:
        trial.set_user_attr(storage.FAIL_REASON, tracking.failure_reason(exc))
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
    return _tell_complete(cfg, study, trial, tracker, tracked)


def _tracking_lost(tracker: tracking.Tracker) -> str | None:
    """Why the tracking server no longer answers (None: it does, or there is none)."""
    uri = tracker.uri if isinstance(tracker, tracking.MlflowTracker) else ""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        tracking.check_server(uri)
    except ConfigError as exc:
        return str(exc)
    return None


def _tell_complete(
    cfg: Config,
    study: optuna.Study,
    trial: optuna.Trial,
    tracker: tracking.Tracker,
    tracked: tracking.TrackedFit,
) -> TrialState:
    summary = tracked.result.summary
    values = [summary.get(o, math.nan) for o in cfg.study.objectives]
    trial.set_user_attr(SUMMARY, summary)
    bad = [o for o, v in zip(cfg.study.objectives, values, strict=True) if not math.isfinite(v)]
    if bad:
        reason = f"objective {bad[0]} is {values[cfg.study.objectives.index(bad[0])]}"
        trial.set_user_attr(storage.FAIL_REASON, reason)
        tracker.end(tracked.run_id, tracking.FAILED, tracking.FAIL, reason)
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    if _worth_keeping(study, values):
        _save_model(tracker, tracked)
        trial.set_user_attr(MODEL, MODEL_FILE)
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
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return values[0] > best if maximize else values[0] < best


def _save_model(tracker: tracking.Tracker, tracked: tracking.TrackedFit) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MODEL_FILE
        torch.save(tracked.result.best_state, path)  # the weights the objective scored
        tracker.log_artifact(tracked.run_id, path)


def trial_name(number: int, overrides: Mapping[str, Any]) -> str:
    """``trial-007 p=0.31 w=128``: what the MLflow UI shows in its run list."""
    parts = [f"trial-{number:03d}"]
    if "model.dropout" in overrides:
        parts.append(f"p={overrides['model.dropout']:.2f}")
    if "model.width" in overrides:
        parts.append(f"w={overrides['model.width']}")
    return " ".join(parts)


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
        trial.report(value, epoch)
        if trial.should_prune():
            raise TrialStopped(f"pruned at epoch {epoch} ({source}={values[source]:.4f})")

    return report


def _trial_bar(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="trials", unit="trial")


def _run_processes(w: _Worker, study: optuna.Study, progress: bool) -> None:
    """``study.workers`` processes on this machine, each with cores / workers torch threads."""
    threads = thread_count(w.cfg)
    ctx = multiprocessing.get_context("spawn")
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by each child's torch at import
    args = (C.to_dict(w.cfg), w.url, w.parent_id, w.max_attempts)
    procs = [
        ctx.Process(target=_worker_main, args=(*args, i + 1)) for i in range(w.cfg.study.workers)
    ]
    for proc in procs:
        proc.start()
    _restore_env("OMP_NUM_THREADS", previous)
    try:
        _wait(procs, study, w.max_attempts if progress else 0)
    except BaseException:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: each worker fails its trial and closes its run
        for proc in procs:
            proc.join()
        raise
    codes = [p.exitcode for p in procs]
    if any(code != 0 for code in codes):
        raise RuntimeError(f"study workers exited with codes {codes}")


def _wait(procs: list[Any], study: optuna.Study, total: int) -> None:
    bar = _trial_bar(total) if total else None
    done0 = storage.finished(study)
    while any(p.is_alive() for p in procs):
        time.sleep(1.0)
        if bar is not None:
            bar.n = storage.finished(study) - done0
            bar.refresh()
    if bar is not None:
        bar.close()


def _restore_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def _worker_main(
    tree: dict[str, Any], url: str, parent_id: str | None, attempts: int, index: int
) -> None:
    """Entry of a spawned worker process: own storage connection, own MLflow client."""
    install_interrupt_handlers()
    cfg = C.from_dict(tree)
    backend_heartbeat = None if storage.is_journal(url) else cfg.study.heartbeat_seconds
    study = optuna.load_study(
        study_name=C.study_name(cfg),
        storage=storage.open_storage(url, backend_heartbeat),
        sampler=space.sampler(cfg, worker=index),
        pruner=space.pruner(cfg),
    )
    worker = _Worker(cfg, url, parent_id, attempts)
    _work(worker, study, tracking.make_tracker(cfg), prepare(cfg.data, cfg.seed))


def _finish(
    cfg: Config,
    study: optuna.Study,
    tracker: tracking.Tracker,
    parent_id: str | None,
    url: str,
    before: set[int],
    seconds: float,
) -> StudyOutcome:
    """Summarise the study on its parent run (metrics, config, report, best model)."""
    from droplab.study_summary import summarize_study  # late: it imports the report

    new = [t for t in study.get_trials(deepcopy=False) if t.number not in before]
    return summarize_study(cfg, study, tracker, parent_id, url, new, seconds)
