"""The worker loop (take a slot under the lock, run the trial) and ``study.workers`` processes."""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

import optuna

from droplab import interrupts, runtime, tags
from droplab.config.identity import to_dict
from droplab.config.load import from_dict
from droplab.config.paths import study_name
from droplab.data.splits import Dataset, prepare
from droplab.fit.cores import worker_count
from droplab.fit.trainer import thread_count
from droplab.progress import log_line, make_bar, result_line
from droplab.study import space, storage
from droplab.study.trial import WorkerSpec, run_closer, run_trial
from droplab.tracking.connect import make_tracker
from droplab.tracking.store import Tracker


def work(spec: WorkerSpec, study: optuna.Study, tracker: Tracker, data: Dataset) -> None:
    """The worker loop: take a slot under the lock, run the trial, until n_trials are taken.

    With ``spec.progress``, a line for every trial that finished meanwhile, this worker's or
    another's (the process that shows progress may be one worker of several).
    """
    bar = make_bar(spec.max_attempts, "trials", "trial") if spec.progress else None
    done0, seen = storage.finished(study), {t.number for t in _finished(study)}
    for _ in range(spec.max_attempts):
        with storage.slot_lock(study, spec.url, spec.cfg):
            storage.recover_stale(study, run_closer(tracker))
            if storage.slots_taken(study) >= spec.cfg.study.n_trials:
                break
            trial = study.ask()
            storage.claim(trial)
        state = run_trial(spec, study, trial, tracker, data)
        if spec.progress:
            seen |= _log_new(study, seen)
        if bar is not None:
            bar.set_postfix_str(f"trial {trial.number} {state.name}")
            bar.n = storage.finished(study) - done0
            bar.refresh()
    if bar is not None:
        bar.close()


def run_processes(spec: WorkerSpec, study: optuna.Study, tracker: Tracker, data: Dataset) -> None:
    """``study.workers`` workers on this machine, each with cores / workers torch threads:
    this process is one of them (a spawned one first re-imports torch, Lightning and MLflow,
    seconds each), the others are spawned."""
    threads = thread_count(spec.cfg)
    ctx = multiprocessing.get_context("spawn")
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by each child's torch at import
    args = (to_dict(spec.cfg), spec.url, spec.parent_id, spec.max_attempts)
    procs = [
        ctx.Process(target=_worker_main, args=args) for _ in range(worker_count(spec.cfg) - 1)
    ]
    for proc in procs:
        proc.start()
    _restore_env("OMP_NUM_THREADS", previous)
    try:
        work(spec, study, tracker, data)
        _wait(procs, study, spec.progress)
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


def trial_line(number: int, state: str, params: dict[str, Any], attrs: dict[str, Any]) -> str:
    """The log line of a finished trial: number, state, params, key numbers (or why it failed)."""
    line = result_line(f"trial {number}", state, params, attrs.get(tags.SUMMARY) or {})
    reason = attrs.get(tags.FAIL_REASON)
    return f"{line} ({reason})" if reason else line


def _wait(procs: list[Any], study: optuna.Study, progress: bool) -> None:
    """Until the spawned workers are done, logging the trials they finish meanwhile."""
    seen = {t.number for t in _finished(study)}
    while any(p.is_alive() for p in procs):
        time.sleep(1.0)
        if progress:
            seen |= _log_new(study, seen)
    if progress:
        _log_new(study, seen)


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]


def _log_new(study: optuna.Study, seen: set[int]) -> set[int]:
    """A line for each trial the worker processes finished since the last look."""
    new = [t for t in _finished(study) if t.number not in seen]
    for t in new:
        log_line(trial_line(t.number, t.state.name, t.params, t.user_attrs))
    return {t.number for t in new}


def _restore_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def _worker_main(tree: dict[str, Any], url: str, parent_id: str | None, attempts: int) -> None:
    """Entry of a spawned worker process: own storage connection, own MLflow client."""
    runtime.setup()
    interrupts.install()
    cfg = from_dict(tree)
    backend_heartbeat = None if storage.is_journal(url) else cfg.study.heartbeat_seconds
    study = optuna.load_study(
        study_name=study_name(cfg),
        storage=storage.open_storage(url, backend_heartbeat),
        sampler=space.sampler(cfg, shared=True),
        pruner=space.pruner(cfg),
    )
    worker = WorkerSpec(cfg, url, parent_id, attempts)
    work(worker, study, make_tracker(cfg), prepare(cfg.data, cfg.seed))
