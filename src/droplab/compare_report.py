"""What a comparison found: the results table (CSV + Markdown), plots and one sentence a width.

Rendered from the seed records and their statistics; :func:`write_comparison_report` rebuilds
them from the finished seed runs in MLflow (found by config hash, as a resumed comparison
finds them), so it never trains. Pages are the report blocks of :mod:`droplab.study_plots`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from droplab import config as C  # noqa: E402
from droplab import (  # noqa: E402
    metrics,
    stats,
    tracking,  # noqa: E402
)
from droplab.compare import (  # noqa: E402
    COMPARISON_ID,
    KIND_COMPARISON,
    Cell,
    ComparisonOutcome,
    SeedRecord,
    analyze,
    collect_finished,
    comparison_id,
    members,
    plan,
)
from droplab.config import Config, ConfigError  # noqa: E402
from droplab.replay import find_runs  # noqa: E402
from droplab.study_plots import Block, signed, to_html, to_markdown  # noqa: E402

HEADLINE = metrics.FINAL_GAP_LOSS  # the gap after the whole training budget: overfitting proper
COST = metrics.BEST_VAL_AUPRC
_NAMES = {
    "model.width": "width",
    "model.dropout": "dropout",
    "data.train_fraction": "train fraction",
}


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


def write_comparison_report(cfg: Config) -> ComparisonReport:
    """``droplab report`` for a comparison: its table, plots and findings, from MLflow.

    Raises:
        ConfigError: the store holds no finished seed run of this comparison.
    """
    cells = plan(cfg)
    todo = members(cfg, cells)
    tracker = tracking.make_tracker(cfg)
    records = collect_finished(tracker, todo, {})
    if not records:
        where = C.mask_secrets(C.tracking_uri(cfg))
        raise ConfigError(
            f"no finished seed runs of comparison {cfg.name} in {where}; run compare"
        )
    notes = []
    if len(records) < len(todo):
        notes.append(f"{len(todo) - len(records)} of {len(todo)} seed runs are not finished yet")
    report = render(cfg, cells, records, analyze(cells, records), notes)
    tags = {tracking.KIND: KIND_COMPARISON, COMPARISON_ID: comparison_id(cells, cfg.compare.seeds)}
    for parent in find_runs(tracker, tags)[:1]:  # refresh the report on the parent run
        log_report(tracker, parent.info.run_id, report)
    return report


def log_report(tracker: tracking.Tracker, run_id: str, report: ComparisonReport) -> None:
    """The tables at the top of the run's artifacts, the pages and images under ``report/``."""
    for path in report.tables:
        tracker.log_artifact(run_id, path)
    for path in report.documents:
        tracker.log_artifact(run_id, path, "report")


def render(
    cfg: Config,
    cells: Sequence[Cell],
    records: Mapping[tuple[str, int], SeedRecord],
    cell_stats: Mapping[str, stats.CellStats],
    notes: Sequence[str] = (),
) -> ComparisonReport:
    """Write report.{html,md}, table.{csv,md}, seeds.csv and PNGs to ``runs/reports/<name>/``."""
    out = C.runs_dir(cfg) / "reports" / re.sub(r"[^\w.-]", "_", cfg.name)
    out.mkdir(parents=True, exist_ok=True)
    table = results_table(cells, cell_stats)
    table.to_csv(out / "table.csv", index=False)
    seeds_table(cells, records).to_csv(out / "seeds.csv", index=False)
    short = summary_table(cells, cell_stats)
    (out / "table.md").write_text(to_markdown([("table", short)]), encoding="utf-8")
    images = _plots(cells, records, cell_stats, out)
    found = findings(cells, cell_stats)
    blocks: list[Block] = [
        ("h1", f"Comparison {cfg.name}: dropout against its baseline, paired by seed"),
        ("ul", found),
        ("table", short),
        ("p", "Every column, raw and Holm-adjusted p: table.csv; every seed run: seeds.csv."),
        *[("img", (p.name, p.stem.replace("_", " "))) for p in images],
        ("h2", "How to read these numbers"),
        ("ul", [*caveats(cfg, cells), *notes]),
    ]
    html, markdown = out / "report.html", out / "report.md"
    markdown.write_text(to_markdown(blocks), encoding="utf-8")
    html.write_text(to_html(blocks), encoding="utf-8")
    return ComparisonReport(
        out, html, markdown, out / "table.csv", out / "table.md", out / "seeds.csv", images, found
    )


def results_table(
    cells: Sequence[Cell], cell_stats: Mapping[str, stats.CellStats]
) -> pd.DataFrame:
    """One row per cell: its overrides, seeds, means, differences, reductions and p-values."""
    keys = {c.key: c.label for c in cells}
    rows = []
    for cell in cells:
        s = cell_stats[cell.key]
        base = keys.get(cell.baseline_key or "", "")
        rows.append({"cell": cell.label, "baseline": base, **cell.overrides, **stats.row(s)})
    return pd.DataFrame(rows)


def seeds_table(
    cells: Sequence[Cell], records: Mapping[tuple[str, int], SeedRecord]
) -> pd.DataFrame:
    """One row per (cell, seed): the MLflow run it came from and its summary metrics."""
    labels = {c.key: c.label for c in cells}
    rows = [
        {
            "cell": labels[r.cell_key],
            "seed": r.seed,
            "run_id": r.run_id,
            "reused": r.reused,
            **r.summary,
        }
        for r in sorted(records.values(), key=lambda r: (list(labels).index(r.cell_key), r.seed))
    ]
    return pd.DataFrame(rows)


def summary_table(
    cells: Sequence[Cell], cell_stats: Mapping[str, stats.CellStats]
) -> pd.DataFrame:
    """The readable table: each quantity as ``estimate [95% CI]``."""
    rows = []
    for cell in cells:
        s = cell_stats[cell.key]
        row = {"cell": cell.label, "seeds": s.n}
        for metric in stats.COMPARED:
            c = s.contrasts.get(metric)
            row[metric] = _ci(s.means[metric], signed)
            row[f"Δ {metric}"] = _ci(c.diff, signed) if c else "baseline"
            if metric in stats.GAPS:
                row[f"reduction ({metric})"] = _ci(c.reduction, _pct) if c and c.reduction else "—"
            row[f"p Holm t / W ({metric})"] = _p(c) if c else "—"
        rows.append(row)
    return pd.DataFrame(rows)


def _ci(i: stats.Interval | None, show: Any) -> str:
    if i is None or math.isnan(i.estimate):
        return "—"
    if not i.bounded:
        return f"{show(i.estimate)} [unbounded]" if math.isinf(i.low) else show(i.estimate)
    return f"{show(i.estimate)} [{show(i.low)}, {show(i.high)}]"


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _p(c: stats.Contrast) -> str:
    return f"{c.p_holm['t']:.2g} / {c.p_holm['wilcoxon']:.2g}"


def findings(cells: Sequence[Cell], cell_stats: Mapping[str, stats.CellStats]) -> list[str]:
    """One plain sentence per group (width): its cell with the largest gap reduction."""
    out = []
    for group in dict.fromkeys(c.group for c in cells):
        treated = [c for c in cells if c.group == group and not c.is_baseline]
        if treated:
            best = max(treated, key=lambda c: _finite(cell_stats[c.key].contrasts[HEADLINE]))
            out.append(_sentence(best, cells, cell_stats[best.key], len(treated)))
    return out


def _finite(c: stats.Contrast) -> float:
    r = c.reduction.estimate if c.reduction is not None else math.nan
    return r if math.isfinite(r) else -math.inf


def _sentence(cell: Cell, cells: Sequence[Cell], s: stats.CellStats, n_rates: int) -> str:
    base = next(c for c in cells if c.key == cell.baseline_key)
    where = ", ".join(
        _phrase(k, v) for k, v in cell.overrides.items() if base.overrides.get(k) == v
    )
    what = ", ".join(
        _phrase(k, v) for k, v in cell.overrides.items() if base.overrides.get(k) != v
    )
    gap, cost = s.contrasts[HEADLINE], s.contrasts[COST]
    n = len(gap.seeds)
    if n == 0:
        return (
            f"At {where or 'the base config'}, no seed of {what} and its baseline both finished."
        )
    r = gap.reduction
    if r is None or math.isnan(r.estimate):
        effect = (
            f"changed the final loss gap by {signed(gap.diff.estimate)} (the baseline's mean gap, "
            f"{signed(gap.baseline.estimate)}, is not above zero, so no reduction is defined)"
        )
    else:
        verb, sign = ("reduced", "") if r.estimate >= 0 else ("widened", "reduction ")
        ci = f"95% CI {_pct(r.low)} to {_pct(r.high)}" if r.bounded else "95% CI unbounded"
        sign += f"{_pct(r.estimate)}, " if sign else ""
        effect = f"{verb} the final train/val loss gap by {abs(r.estimate):.0%} ({sign}{ci}"
        effect += f", {n} paired seeds, Holm-adjusted paired-t p = {gap.p_holm['t']:.2g})"
    pick = f" (the largest reduction of {n_rates} settings)" if n_rates > 1 else ""
    return (
        f"At {where or 'the base config'}, {what}{pick} {effect} and changed best val AUPRC by "
        f"{signed(cost.diff.estimate, 3)} (95% CI {signed(cost.diff.low, 3)} to "
        f"{signed(cost.diff.high, 3)})."
    )


def _phrase(key: str, value: Any) -> str:
    return (
        f"{_NAMES[key]} {value:g}"
        if key in _NAMES and not isinstance(value, list)
        else f"{key}={value}"
    )


def caveats(cfg: Config, cells: Sequence[Cell]) -> list[str]:
    """The design and the small-sample limits, with this comparison's numbers."""
    n, k = len(cfg.compare.seeds), sum(not c.is_baseline for c in cells)
    floor = stats.min_wilcoxon_p(n)
    return [
        f"Seeds {list(cfg.compare.seeds)} pair the cells: seed s gives every cell the same rows, "
        "split and batch order, so each cell is compared with its baseline seed by seed.",
        "gap/loss = val loss - train loss, both in eval mode (dropout off); final = last epoch, "
        "best = the epoch of best val AUPRC. The sentences use the final gap: the overfitting "
        "that the whole training budget opens. Reduction = 1 - mean gap / mean baseline gap.",
        "The reduction's 95% CI is Fieller's interval for a ratio of paired means (it inverts the "
        "paired t-test of gap - rho x baseline gap); it is unbounded when the baseline's mean gap "
        "is not clearly above zero.",
        f"With {n} paired seeds the exact two-sided Wilcoxon signed-rank test cannot go below "
        f"p = {floor:.4g} (2/2^{n}) whatever the effect"
        + (", so it can never reach 0.05 on its own" if floor > 0.05 else "")
        + f"; Holm over {k} cells lifts that floor to {min(1.0, k * floor):.4g}.",
        f"p-values are Holm-adjusted across the {k} non-baseline cells, separately for each "
        "metric and test; the confidence intervals are not adjusted.",
        f"The t intervals and tests assume roughly normal per-seed differences, which {n} seeds "
        "cannot check; one unusual seed moves a mean a lot. Read the intervals as rough.",
        "The bands of the gap curves are 95% t-intervals of each cell's mean over seeds (not "
        "paired); the paired differences are in the table.",
    ]


def _plots(
    cells: Sequence[Cell],
    records: Mapping[tuple[str, int], SeedRecord],
    cell_stats: Mapping[str, stats.CellStats],
    out: Path,
) -> list[Path]:
    return [
        gap_curves(cells, records, out / "gap_curves.png"),
        reduction_plot(cells, cell_stats, out / "reduction_vs_dropout.png"),
        benefit_cost(cells, cell_stats, out / "benefit_cost.png"),
    ]


def gap_curves(
    cells: Sequence[Cell], records: Mapping[tuple[str, int], SeedRecord], out: Path
) -> Path:
    """Mean gap/loss per epoch with its 95% t band, one line per cell, one panel per group."""
    groups = list(dict.fromkeys(c.group for c in cells))
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4), squeeze=False)
    for ax, group in zip(axes[0], groups, strict=True):
        for cell in (c for c in cells if c.group == group):
            curves = [r.curve for r in records.values() if r.cell_key == cell.key and r.curve]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            bands = [stats.mean_ci([c[e] for c in curves]) for e in range(length)]
            epochs = np.arange(1, length + 1)
            ax.plot(epochs, [b.estimate for b in bands], label=cell.label)
            ax.fill_between(epochs, [b.low for b in bands], [b.high for b in bands], alpha=0.15)
        ax.axhline(0, color="k", lw=0.5)
        ax.set(title=group, xlabel="epoch", ylabel=metrics.GAP_LOSS)
        if ax.lines[1:]:  # the zero line is always there
            ax.legend(fontsize=7)
    fig.suptitle(f"mean {metrics.GAP_LOSS} per epoch (band: 95% t-interval over seeds)")
    return _save(fig, out)


def reduction_plot(
    cells: Sequence[Cell], cell_stats: Mapping[str, stats.CellStats], out: Path
) -> Path:
    """Final-gap reduction against the dropout rate, one line per group, 95% CI bars."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for group in dict.fromkeys(c.group for c in cells):
        mine = [c for c in cells if c.group == group]
        xs = [_dropout_x(c, i) for i, c in enumerate(mine)]
        rs = [_reduction(cell_stats[c.key]) for c in mine]
        ax.errorbar(
            xs, [r.estimate for r in rs], yerr=_yerr(rs), marker="o", capsize=3, label=group
        )
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xlabel="dropout p (or cell index)", ylabel=f"reduction of {HEADLINE}")
    ax.set_title("gap reduction vs dropout, 95% Fieller CI (no bar: unbounded)", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, out)


def benefit_cost(
    cells: Sequence[Cell], cell_stats: Mapping[str, stats.CellStats], out: Path
) -> Path:
    """Gap reduction (benefit) against the change in best val AUPRC (cost), 95% CI bars."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for cell in (c for c in cells if not c.is_baseline):
        s = cell_stats[cell.key]
        r, d = _reduction(s), s.contrasts[COST].diff
        ax.errorbar(
            [r.estimate], [d.estimate], xerr=_yerr([r]), yerr=_yerr([d]), marker="o", capsize=3
        )
        ax.annotate(
            cell.label,
            (r.estimate, d.estimate),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set(xlabel=f"reduction of {HEADLINE} (benefit)", ylabel=f"Δ {COST} (cost if < 0)")
    ax.set_title("benefit vs cost against the baseline, 95% CIs", fontsize=9)
    return _save(fig, out)


def _reduction(s: stats.CellStats) -> stats.Interval:
    c = s.contrasts.get(HEADLINE)
    if c is None:  # a baseline: no reduction against itself, by definition
        return stats.Interval(0.0, 0.0, 0.0)
    return c.reduction or stats.Interval(math.nan)


def _dropout_x(cell: Cell, index: int) -> float:
    p = cell.overrides.get("model.dropout")
    return float(p) if isinstance(p, int | float) else float(index)


def _yerr(intervals: Sequence[stats.Interval]) -> np.ndarray:
    """Error bar lengths; none for unbounded or missing intervals."""
    lo = [i.estimate - i.low if i.bounded else 0.0 for i in intervals]
    hi = [i.high - i.estimate if i.bounded else 0.0 for i in intervals]
    return np.nan_to_num(np.array([lo, hi]))


def _save(fig: Any, out: Path) -> Path:
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def print_comparison(cfg: Config, outcome: ComparisonOutcome) -> None:
    """What ran, the findings, and where the table, report and runs are."""
    from droplab.summary import ui_hint

    print(
        f"\ncomparison {outcome.name}: {outcome.trained} seed run(s) trained now, "
        f"{outcome.reused} reused, {len(outcome.failed)} failed, in {outcome.seconds:.1f}s"
    )
    report = outcome.report
    for sentence in report.findings if report else []:
        print(f"  {sentence}")
    for line in outcome.failed:
        print(f"  failed: {line}")
    for note in outcome.notes:
        print(f"  note: {note}")
    print(f"  MLflow parent run: {outcome.parent_run_id}")
    if report is not None:
        print(f"  table: {report.table_csv}\n  report: {report.html}")
    print(f"  open: {ui_hint(cfg)}")
