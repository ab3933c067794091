"""``droplab compare``: a paired multi-seed grid, every cell against its dropout-0 baseline.

Reads top to bottom in :func:`run_comparison`: plan the cells (a bad key stops here), prepare
every data split (bad data stops here), open the MLflow parent and cell runs (reopened when
the comparison resumes), reuse each (cell, seed) that already finished, train the rest, then
compute the statistics, write the report and close the runs.

With ``compare.vectorize`` (the default) the members left to train that share a shape (seeds
and dropout rates of one width: :func:`droplab.fit.stack.grouping.group_stackable`) train as
one stacked model where that is faster (:func:`droplab.fit.stack.grouping.worth_stacking`).
Each member equals its own ``fit`` bit for bit, and its seed run is then logged as a
sequential one would be (:func:`droplab.tracking.runs.log_fitted`), tagged
``droplab.vectorized``: the same runs, the same numbers, the same table. The runs of a stack
are created once it has trained, so a process killed mid-stack leaves none of them RUNNING
(and none finished: the rerun trains them all).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from droplab import metrics, tags
from droplab.compare import stats
from droplab.compare.plan import MAX_STACK, Cell, Member, comparison_id, members, plan
from droplab.compare.report import ComparisonReport, log_report, render
from droplab.compare.results import (
    ComparisonFailed,
    ComparisonOutcome,
    SeedRecord,
    analyze,
    collect_finished,
    dataset,
)
from droplab.config.schema import Config, DataConfig
from droplab.data.splits import Dataset
from droplab.fit.stack.grouping import group_stackable, worth_stacking
from droplab.fit.stack.members import MemberResult, fit_members
from droplab.fit.trainer import EpochHook, check_monitor
from droplab.progress import epoch_bar, log_line, make_bar, result_line
from droplab.tracking.connect import make_tracker
from droplab.tracking.provenance import run_params
from droplab.tracking.runs import (
    RunSpec,
    TrackedFit,
    end_quietly,
    failure_reason,
    log_fitted,
    run_fit,
    stacked_spec,
)
from droplab.tracking.store import Tracker


@dataclass
class _Context:
    cfg: Config
    tracker: Tracker
    comparison_id: str
    data: dict[tuple[DataConfig, int], Dataset]
    hooks: Sequence[EpochHook] = ()
    progress: bool = False
    parent_id: str = ""
    cell_runs: dict[str, str] = field(default_factory=dict)


def run_comparison(
    cfg: Config, progress: bool = False, hooks: Sequence[EpochHook] = ()
) -> ComparisonOutcome:
    """Run (or resume) the comparison of ``compare.grid`` over ``compare.seeds``.

    Args:
        cfg: the resolved config; ``compare.grid`` must not be empty.
        progress: show progress bars (members, and epochs of the running member).
        hooks: epoch hooks passed to every fit (tests use them to interrupt).

    Returns:
        The statistics of every cell, what was trained or reused, and the report's paths.

    Raises:
        ConfigError: bad grid, baseline or store (before anything is written).
        DataError: bad data (before anything is written).
        ComparisonFailed: every seed run started now failed.
    """
    start = time.perf_counter()
    cells = plan(cfg)
    todo = members(cfg, cells)
    data: dict[tuple[DataConfig, int], Dataset] = {}
    for member in todo:
        check_monitor(member.cfg, dataset(data, member.cfg))  # bad data: exit 2 before any run
    ctx = _Context(cfg, make_tracker(cfg), comparison_id(cells, cfg.compare.seeds), data)
    ctx.hooks, ctx.progress = hooks, progress
    try:
        _open_parent(ctx)
        _open_cells(ctx, cells)
        _close_orphans(ctx)
        records = collect_finished(ctx.tracker, todo, data)
        pending = [m for m in todo if m.key not in records]
        records.update(_train(ctx, pending))
        return _finish(ctx, cells, records, len(pending), time.perf_counter() - start)
    except BaseException as exc:
        reason = failure_reason(exc)
        for run_id in [*ctx.cell_runs.values(), ctx.parent_id]:
            if run_id:
                end_quietly(ctx.tracker, run_id, tags.FAILED, tags.FAIL, reason)
        raise


def _open_parent(ctx: _Context) -> None:
    """The comparison's parent run: created once, reopened when the comparison resumes."""
    labels = {tags.KIND: tags.KIND_COMPARISON, tags.COMPARISON_ID: ctx.comparison_id}
    found = ctx.tracker.find_runs(labels)
    if found:
        ctx.parent_id = found[0].id
        ctx.tracker.reopen(ctx.parent_id)
        return
    name = f"comparison-{ctx.cfg.name}"
    ctx.parent_id = ctx.tracker.start(name, tags.KIND_COMPARISON, labels, None)
    ctx.tracker.log_params(ctx.parent_id, run_params(ctx.cfg))


def _open_cells(ctx: _Context, cells: Sequence[Cell]) -> None:
    """One child run per cell (params: the cell's overrides); existing ones are reopened.
    Each goes into ``ctx.cell_runs`` at once, so a failure midway still closes it."""
    found = ctx.tracker.find_runs({tags.KIND: tags.KIND_CELL, tags.PARENT: ctx.parent_id})
    existing = {r.tags.get(tags.CELL_KEY): r.id for r in found}
    for cell in cells:
        run_id = existing.get(cell.key)
        if run_id is not None:
            ctx.tracker.reopen(run_id)
            ctx.cell_runs[cell.key] = run_id
            continue
        labels = {tags.CELL_KEY: cell.key, tags.BASELINE: str(cell.is_baseline).lower()}
        if cell.arm:
            labels[tags.ARM] = cell.arm
        run_id = ctx.tracker.start(f"cell {cell.label}", tags.KIND_CELL, labels, ctx.parent_id)
        ctx.cell_runs[cell.key] = run_id
        ctx.tracker.log_params(run_id, cell.overrides)


def _close_orphans(ctx: _Context) -> None:
    """Close the seed runs that a killed invocation left RUNNING (kill -9, OOM, a lost
    machine): no handler ran to end them, and their (cell, seed) is trained again now."""
    labels = {tags.KIND: tags.KIND_SEED, tags.COMPARISON_ID: ctx.comparison_id}
    for run in ctx.tracker.find_runs(labels, status=tags.RUNNING):
        reason = "the comparison's process died during this run (closed by the next start)"
        ctx.tracker.end(run.id, tags.FAILED, tags.FAIL, reason)


def _train(ctx: _Context, pending: Sequence[Member]) -> dict[tuple[str, int], SeedRecord]:
    bar = make_bar(len(pending), "seed runs", "run") if ctx.progress else None
    out = {}
    for group in _groups(pending, ctx.cfg.compare.vectorize):
        for m, record in zip(group, _train_members(ctx, group), strict=True):
            out[(record.cell_key, record.seed)] = record
            if bar is not None:
                log_line(_seed_line(m, record))
                bar.update(1)
    if bar is not None:
        bar.close()
    return out


def _seed_line(m: Member, record: SeedRecord) -> str:
    state = tags.FAIL if record.failure else tags.COMPLETE
    line = result_line(f"{m.cell.label} seed-{m.seed}", state, {}, record.summary)
    return f"{line} ({record.failure})" if record.failure else line


def _groups(pending: Sequence[Member], vectorize: bool) -> list[list[Member]]:
    """Members trained together: with ``compare.vectorize``, those of one shape where stacking
    them is faster (at most ``MAX_STACK`` a stack); each one alone otherwise."""
    if not vectorize:
        return [[m] for m in pending]
    out: list[list[Member]] = []
    for idx in group_stackable([m.cfg for m in pending]):
        group = [pending[i] for i in idx]
        if len(group) == 1 or not worth_stacking(group[0].cfg):
            out += [[m] for m in group]
        else:
            out += [group[i : i + MAX_STACK] for i in range(0, len(group), MAX_STACK)]
    return out


def _train_members(ctx: _Context, group: Sequence[Member]) -> list[SeedRecord]:
    """Train ``group`` (one member alone, several as one stack), one record per member."""
    if len(group) == 1:
        return [_train_one(ctx, group[0])]
    hooks = [list(ctx.hooks) for _ in group]
    if ctx.progress:
        desc = f"{len(group)} runs stacked ({group[0].cell.group})"
        hooks[0].append(epoch_bar(group[0].cfg.train.epochs, desc))
    started = time.time()
    data = [dataset(ctx.data, m.cfg) for m in group]
    results = fit_members([m.cfg for m in group], hooks, data)
    return [_log_member(ctx, m, r, started) for m, r in zip(group, results, strict=True)]


def _seed_spec(ctx: _Context, m: Member, run_ids: list[str]) -> RunSpec:
    """The seed run of member ``m``; its id goes into ``run_ids`` as soon as it exists."""
    labels = {
        tags.COMPARISON_ID: ctx.comparison_id,
        tags.CELL_KEY: m.cell.key,
        tags.SEED: str(m.seed),
    }
    if m.cell.arm:
        labels[tags.ARM] = m.cell.arm
    return RunSpec(
        kind=tags.KIND_SEED,
        name=f"seed-{m.seed}",
        parent_id=ctx.cell_runs[m.cell.key],
        tags=labels,
        on_start=run_ids.append,
    )


def _train_one(ctx: _Context, m: Member) -> SeedRecord:
    hooks = list(ctx.hooks)
    if ctx.progress:
        hooks.append(epoch_bar(m.cfg.train.epochs, f"{m.cell.label} seed-{m.seed}"))
    started: list[str] = []
    try:
        spec = _seed_spec(ctx, m, started)
        tracked = run_fit(m.cfg, ctx.tracker, spec, hooks=hooks, data=dataset(ctx.data, m.cfg))
    except Exception as exc:  # a diverged seed is a result, not a crash: its pair is dropped
        return _failed(m, started, exc)
    return _record(m, tracked)


def _log_member(ctx: _Context, m: Member, result: MemberResult, started: float) -> SeedRecord:
    """The seed run of a member that trained in a stack, logged as :func:`_train_one` would."""
    run_ids: list[str] = []
    try:
        spec = _seed_spec(ctx, m, run_ids)
        if result.stacked > 1:  # (else fit_members trained the group one by one: no such dates)
            spec = stacked_spec(spec, result.stacked, started, started + result.seconds)
        tracked = log_fitted(m.cfg, ctx.tracker, spec, result, result.error)
    except Exception as exc:  # as in _train_one: a failed member fails its seed run alone
        return _failed(m, run_ids, exc)
    return _record(m, tracked)


def _failed(m: Member, run_ids: Sequence[str], exc: Exception) -> SeedRecord:
    run_id = run_ids[0] if run_ids else None
    return SeedRecord(m.cell.key, m.seed, run_id, {}, [], failure=failure_reason(exc))


def _record(m: Member, tracked: TrackedFit) -> SeedRecord:
    curve = [epoch[metrics.GAP_LOSS] for epoch in tracked.result.history]
    return SeedRecord(m.cell.key, m.seed, tracked.run_id, dict(tracked.result.summary), curve)


def _finish(
    ctx: _Context,
    cells: list[Cell],
    records: dict[tuple[str, int], SeedRecord],
    n_pending: int,
    seconds: float,
) -> ComparisonOutcome:
    """Statistics, cell runs closed with their means and contrasts, report on the parent."""
    labels = {c.key: c.label for c in cells}
    failed = [
        f"{labels[r.cell_key]} seed-{r.seed}: {r.failure}" for r in records.values() if r.failure
    ]
    if n_pending and len(failed) == n_pending:
        raise ComparisonFailed(f"all {n_pending} seed runs failed; first: {failed[0]}")
    finished = {k: r for k, r in records.items() if r.failure is None}
    outcome = ComparisonOutcome(
        name=ctx.cfg.name,
        parent_run_id=ctx.parent_id,
        cells=cells,
        stats=analyze(cells, finished),
        trained=n_pending - len(failed),
        reused=sum(r.reused for r in finished.values()),
        failed=failed,
        seconds=seconds,
    )
    _close_cells(ctx, cells, finished, outcome.stats)
    outcome.report = _report(ctx, finished, outcome)
    counts = {
        stats.N_TRAINED: outcome.trained,
        stats.N_REUSED: outcome.reused,
        stats.N_FAILED: len(failed),
    }
    ctx.tracker.log_metrics(ctx.parent_id, {k: float(v) for k, v in counts.items()})
    ctx.tracker.end(ctx.parent_id, tags.FINISHED, tags.COMPLETE)
    return outcome


def _close_cells(
    ctx: _Context,
    cells: Sequence[Cell],
    records: Mapping[tuple[str, int], SeedRecord],
    cell_stats: Mapping[str, stats.CellStats],
) -> None:
    for cell in cells:
        run_id = ctx.cell_runs[cell.key]
        seeds = {str(r.seed): r.run_id for r in records.values() if r.cell_key == cell.key}
        ctx.tracker.set_tags(run_id, {tags.SEED_RUNS: json.dumps(seeds, sort_keys=True)})
        ctx.tracker.log_metrics(run_id, stats.cell_metrics(cell_stats[cell.key]))
        if seeds:
            ctx.tracker.end(run_id, tags.FINISHED, tags.COMPLETE)
        else:
            ctx.tracker.end(run_id, tags.FAILED, tags.FAIL, "no seed run finished")


def _report(
    ctx: _Context, records: Mapping[tuple[str, int], SeedRecord], outcome: ComparisonOutcome
) -> ComparisonReport | None:
    """Write the report and log its files on the parent run (tables at the top level)."""
    try:
        report = render(ctx.cfg, outcome.cells, records, outcome.stats)
    except Exception as exc:  # a report problem must not lose a finished comparison
        outcome.notes.append(f"report not written: {failure_reason(exc)}")
        return None
    log_report(ctx.tracker, ctx.parent_id, report)
    return report
