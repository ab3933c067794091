"""Run lifecycle: open a fit's run, log its epochs, close it FINISHED, KILLED or FAILED.

droplab sets every run's final state itself: Lightning's logger would mark a pruned trial
FAILED and MLflow's exit hook a crashed run FINISHED.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from droplab import interrupts, metrics, tags
from droplab.config.identity import first_line
from droplab.config.schema import Config
from droplab.data.splits import Dataset, prepare
from droplab.fit.activations import draw_activations
from droplab.fit.model import MLP
from droplab.fit.trainer import EpochHook, FitResult, TrialStopped, fit
from droplab.tracking.provenance import manifest, run_params, run_tags
from droplab.tracking.store import MlflowTracker, Tracker


@dataclass(frozen=True)
class RunSpec:
    """What a fit's run is, said once: its kind (a ``tags.KIND_*``), name, parent and extra
    tags, and what it records when it ends.

    ``on_start`` hears the run id as soon as the run exists. ``activations=False`` skips the
    activations picture even where ``tracking.activations`` asks for it (a study draws it for
    its best trial only, see :func:`log_activations`). ``start_time`` / ``end_time`` (seconds
    since the epoch) date a run logged after its fit ran (see :func:`log_fitted`).
    """

    kind: str
    name: str
    parent_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    on_start: Callable[[str], None] | None = None
    log_model: bool = False
    activations: bool = True
    manifest_extra: Mapping[str, Any] = field(default_factory=dict)
    start_time: float | None = None
    end_time: float | None = None


def stacked_spec(spec: RunSpec, size: int, start: float, end: float) -> RunSpec:
    """A member's run trained in a stack of ``size``: tagged so, dated when the stack trained."""
    return replace(
        spec,
        tags={**spec.tags, tags.VECTORIZED: "true", tags.STACK_SIZE: str(size)},
        manifest_extra={"vectorized": {"stacked": True, "stack_size": size}},
        start_time=start,
        end_time=end,
    )


@dataclass
class TrackedFit:
    run_id: str
    result: FitResult


def _epoch_logger(tracker: Tracker, run_id: str, seen: list[dict[str, float]]) -> EpochHook:
    def log(epoch: int, values: Mapping[str, float]) -> None:
        seen.append(dict(values))
        tracker.log_epoch(run_id, values, step=epoch)  # one log_batch per epoch

    return log


def open_run(cfg: Config, tracker: Tracker, data: Dataset, spec: RunSpec) -> str:
    """Create a fit's run: its tags (config hash, data digest, commit), params and data input.

    If logging fails the run is ended FAILED with the reason and the error raised.
    """
    labels = {**run_tags(cfg, data), **spec.tags}
    run_id = tracker.start(
        spec.name, spec.kind, labels, spec.parent_id, start_time=spec.start_time
    )
    try:
        if spec.on_start is not None:
            spec.on_start(run_id)
        tracker.log_params(run_id, run_params(cfg))
        tracker.log_dataset(run_id, data)
    except BaseException as exc:
        end_quietly(tracker, run_id, tags.FAILED, tags.FAIL, failure_reason(exc))
        raise
    return run_id


def close_run(
    cfg: Config, tracker: Tracker, run_id: str, spec: RunSpec, result: FitResult
) -> None:
    """End a finished fit's run FINISHED, after its summary, manifest, plot (and model)."""
    tracker.flush()  # every epoch written, or the run fails with the write's error
    tracker.log_metrics(run_id, result.summary)
    tracker.log_dict(run_id, {**manifest(cfg, result), **spec.manifest_extra}, tags.MANIFEST)
    if cfg.tracking.activations and spec.activations:
        log_activations(tracker, run_id, result.model, result.data.x_val, cfg.seed)
    if spec.log_model:
        tracker.log_model(run_id, result.model, result.data.x_val[:5].cpu())
    tracker.end(run_id, tags.FINISHED, tags.COMPLETE, end_time=spec.end_time)


def fail_run(
    cfg: Config,
    tracker: Tracker,
    run_id: str,
    spec: RunSpec,
    exc: BaseException,
    history: Sequence[Mapping[str, float]],
) -> None:
    """End the run of a fit stopped by ``exc``: a :class:`TrialStopped` (pruning) is KILLED
    with the summary of the epochs in ``history``; any other error or an interrupt is FAILED
    with the reason (quietly: if the store is down too, the caller's error wins)."""
    if isinstance(exc, TrialStopped):
        tracker.flush()  # the epochs first, then the summary of them
        tracker.log_metrics(run_id, metrics.summarize(history, cfg.train.monitor))
        tracker.end(run_id, tags.KILLED, tags.PRUNED, str(exc), end_time=spec.end_time)
        return
    reason = failure_reason(exc)
    end_quietly(tracker, run_id, tags.FAILED, tags.FAIL, reason, end_time=spec.end_time)


def run_fit(
    cfg: Config,
    tracker: Tracker,
    spec: RunSpec,
    hooks: Sequence[EpochHook] = (),
    data: Dataset | None = None,
) -> TrackedFit:
    """One fit inside one MLflow run whose final state droplab sets itself.

    The data is loaded before the run is created, so bad data leaves no run behind. A hook
    that raises :class:`TrialStopped` ends the run KILLED (state PRUNED); any other error or
    an interrupt ends it FAILED with the reason; success ends it FINISHED.
    """
    data = data or prepare(cfg.data, cfg.seed)
    run_id = open_run(cfg, tracker, data, spec)
    seen: list[dict[str, float]] = []
    try:
        result = fit(cfg, data, hooks=[_epoch_logger(tracker, run_id, seen), *hooks])
        close_run(cfg, tracker, run_id, spec, result)
    except BaseException as exc:
        fail_run(cfg, tracker, run_id, spec, exc, seen)
        raise
    return TrackedFit(run_id, result)


def log_fitted(
    cfg: Config,
    tracker: Tracker,
    spec: RunSpec,
    result: FitResult,
    error: Exception | None = None,
) -> TrackedFit:
    """Log a fit that already ran (a member of a stacked fit) as :func:`run_fit` logs one.

    The same run: tags, params, data input, every epoch of ``result.history`` (in one
    ``log_batch`` where the store takes it), then the summary and manifest and FINISHED; or,
    when ``error`` stopped the fit, the end ``run_fit`` gives a fit that raised it, and
    ``error`` is raised. The run is created only now, so a process killed while the fit
    trained leaves no run RUNNING; the spec's ``start_time`` and ``end_time`` date it when the
    fit ran.
    """
    run_id = open_run(cfg, tracker, result.data, spec)
    try:
        tracker.log_history(run_id, result.history)  # every epoch at once: fewer writes
        if error is not None:
            raise error
        close_run(cfg, tracker, run_id, spec, result)
    except BaseException as exc:
        fail_run(cfg, tracker, run_id, spec, exc, result.history)
        raise
    return TrackedFit(run_id, result)


_RUN_FOR_STATE = {
    tags.COMPLETE: (tags.FINISHED, tags.COMPLETE),
    tags.PRUNED: (tags.KILLED, tags.PRUNED),
}


def reconcile_runs(
    tracker: Tracker,
    parent_id: str,
    states: Mapping[str, str],
    where: Mapping[str, str] | None = None,
) -> int:
    """Close child runs left RUNNING whose trial has ended (e.g. the store was down when it
    ended); ``states`` maps trial numbers (as tag strings) to Optuna state names. ``where``
    selects other runs than the children of ``parent_id`` (a study's seed runs)."""
    closed = 0
    for child in tracker.find_runs(where or {tags.PARENT: parent_id}, status=tags.RUNNING):
        state = states.get(child.tags.get(tags.TRIAL_NUMBER_TAG, ""), tags.RUNNING)
        if state in (tags.RUNNING, tags.WAITING):
            continue
        status, tag = _RUN_FOR_STATE.get(state, (tags.FAILED, tags.FAIL))
        tracker.end(child.id, status, tag, f"closed to match trial state {state}")
        closed += 1
    return closed


def end_quietly(
    tracker: Tracker,
    run_id: str,
    status: str,
    state: str,
    reason: str,
    end_time: float | None = None,
) -> None:
    """Close a run on the failure path; if the store is down too, the original error wins
    (the next ``droplab study`` reconciles the run with Optuna's state)."""
    try:
        tracker.end(run_id, status, state, reason, end_time=end_time)
    except Exception as exc:  # noqa: BLE001 - the caller re-raises the real failure
        logging.getLogger(__name__).warning("could not close run %s: %s", run_id, first_line(exc))


def failure_reason(exc: BaseException) -> str:
    """One line saying why a run stopped."""
    if isinstance(exc, interrupts.Interrupted):
        return f"interrupted by {exc}"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted by SIGINT"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def log_activations(
    tracker: Tracker, run_id: str, model: MLP, x_val: torch.Tensor, seed: int
) -> None:
    """``activations.png`` of ``model`` on the first 64 validation rows, on run ``run_id``."""
    if not isinstance(tracker, MlflowTracker):
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = draw_activations(model, x_val[:64].cpu(), seed, Path(tmp) / "activations.png")
        tracker.log_artifact(run_id, path)
