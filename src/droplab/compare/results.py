"""A comparison's seed records: finished ones found again by config hash, and their statistics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from droplab import metrics, tags
from droplab.compare import stats
from droplab.compare.plan import Cell, Member
from droplab.config.identity import config_hash
from droplab.config.schema import Config, DataConfig
from droplab.data.splits import Dataset, prepare
from droplab.tracking.store import LoggedRun, Tracker


class ComparisonFailed(RuntimeError):
    """Every seed run this invocation started failed; the message names the first reason."""


@dataclass(frozen=True)
class ComparisonReport:
    """Where the comparison report went: tables (logged at the top of the parent run) and
    documents (the pages and their images, logged under ``report/``)."""

    directory: Path
    html: Path
    markdown: Path
    table_csv: Path
    table_markdown: Path
    seeds_csv: Path
    images: list[Path]
    findings: list[str]

    @property
    def tables(self) -> list[Path]:
        return [self.table_csv, self.table_markdown, self.seeds_csv]

    @property
    def documents(self) -> list[Path]:
        return [self.html, self.markdown, *self.images]


@dataclass
class SeedRecord:
    """What a (cell, seed) produced: its run, summary metrics and per-epoch gap/loss."""

    cell_key: str
    seed: int
    run_id: str | None
    summary: dict[str, float]
    curve: list[float]
    reused: bool = False
    failure: str | None = None


@dataclass
class ComparisonOutcome:
    """What one ``droplab compare`` invocation did and where the results are."""

    name: str
    parent_run_id: str
    cells: list[Cell]
    stats: dict[str, stats.CellStats]
    trained: int
    reused: int
    failed: list[str]
    seconds: float
    report: ComparisonReport | None = None
    notes: list[str] = field(default_factory=list)


def dataset(cache: dict[tuple[DataConfig, int], Dataset], cfg: Config) -> Dataset:
    """``prepare(cfg.data, cfg.seed)``, once per data section and seed (cells share it)."""
    key = (cfg.data, cfg.seed)
    if key not in cache:
        cache[key] = prepare(cfg.data, cfg.seed)
    return cache[key]


def collect_finished(
    tracker: Tracker, todo: Sequence[Member], data: dict[tuple[DataConfig, int], Dataset]
) -> dict[tuple[str, int], SeedRecord]:
    """The members that already have a FINISHED seed run with their config hash and data."""
    finished = _finished_by_hash(tracker, tags.KIND_SEED)
    out = {}
    for m in todo:
        run = finished.get(config_hash(m.cfg))
        if run is None or run.tags.get(tags.DATA_DIGEST) != dataset(data, m.cfg).digest:
            continue
        summary, curve = _logged_summary(tracker, run)
        out[m.key] = SeedRecord(m.cell.key, m.seed, run.id, summary, curve, reused=True)
    return out


def _finished_by_hash(tracker: Tracker, kind: str) -> dict[str, LoggedRun]:
    """The oldest FINISHED run of ``kind`` for each config hash (the resume index)."""
    out: dict[str, LoggedRun] = {}
    for run in tracker.find_runs({tags.KIND: kind}, status=tags.FINISHED):
        out.setdefault(run.tags.get(tags.CONFIG_HASH, ""), run)
    return out


def _logged_summary(tracker: Tracker, run: LoggedRun) -> tuple[dict[str, float], list[float]]:
    """A logged run's summary metrics and its per-epoch ``gap/loss`` (the latest value of each
    epoch, as the MLflow UI plots it)."""
    history = tracker.metric_history(run.id, metrics.GAP_LOSS)
    keys = (*metrics.SUMMARY_KEYS, *metrics.OPTIONAL_SUMMARY_KEYS)
    summary = {k: v for k, v in run.metrics.items() if k in keys}
    return summary, [history[step][-1] for step in sorted(history)]


def analyze(
    cells: Sequence[Cell], records: Mapping[tuple[str, int], SeedRecord]
) -> dict[str, stats.CellStats]:
    """Statistics of every cell from its finished seed records (see :func:`stats.analyze`)."""
    values: dict[str, dict[str, dict[int, float]]] = {c.key: {} for c in cells}
    for r in records.values():
        if r.failure is None:
            for metric, value in r.summary.items():
                values[r.cell_key].setdefault(metric, {})[r.seed] = value
    return stats.analyze(values, {c.key: c.baseline_key for c in cells})
