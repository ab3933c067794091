"""What a comparison found: the results table (CSV + Markdown), plots and one sentence a width.

Rendered from the seed records and their statistics; :func:`write_comparison_report` rebuilds
them from the finished seed runs in MLflow (found by config hash, as a resumed comparison
finds them), so it never trains. Pages are the report blocks of :mod:`droplab.study_plots`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd  # noqa: E402

from droplab import tags
from droplab.compare import stats
from droplab.compare.plan import Cell, comparison_id, members, plan
from droplab.compare.plots import benefit_cost, gap_curves, reduction_plot
from droplab.compare.results import ComparisonReport, SeedRecord, analyze, collect_finished
from droplab.compare.stats import CALIBRATION, COST, GAPS, HEADLINE
from droplab.config.identity import mask_secrets
from droplab.config.paths import runs_dir, tracking_uri
from droplab.config.schema import Config, ConfigError
from droplab.render.page import Block, signed, to_html, to_markdown
from droplab.tracking.connect import make_tracker
from droplab.tracking.store import Tracker

_NAMES = {
    "model.width": "width",
    "model.dropout": "dropout",
    "data.train_fraction": "train fraction",
}


def write_comparison_report(cfg: Config) -> ComparisonReport:
    """``droplab report`` for a comparison: its table, plots and findings, from MLflow.

    Raises:
        ConfigError: the store holds no finished seed run of this comparison.
    """
    cells = plan(cfg)
    todo = members(cfg, cells)
    tracker = make_tracker(cfg)
    records = collect_finished(tracker, todo, {})
    if not records:
        where = mask_secrets(tracking_uri(cfg))
        raise ConfigError(
            f"no finished seed runs of comparison {cfg.name} in {where}; run compare"
        )
    notes = []
    if len(records) < len(todo):
        notes.append(f"{len(todo) - len(records)} of {len(todo)} seed runs are not finished yet")
    report = render(cfg, cells, records, analyze(cells, records), notes)
    labels = {
        tags.KIND: tags.KIND_COMPARISON,
        tags.COMPARISON_ID: comparison_id(cells, cfg.compare.seeds),
    }
    for parent in tracker.find_runs(labels)[:1]:  # refresh the report on the parent run
        log_report(tracker, parent.id, report)
    return report


def log_report(tracker: Tracker, run_id: str, report: ComparisonReport) -> None:
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
    out = runs_dir(cfg) / "reports" / re.sub(r"[^\w.-]", "_", cfg.name)
    out.mkdir(parents=True, exist_ok=True)
    table = results_table(cells, cell_stats)
    table.to_csv(out / "table.csv", index=False)
    seeds_table(cells, records).to_csv(out / "seeds.csv", index=False)
    arms = any(c.arm for c in cells)
    short = (arms_table if arms else summary_table)(cells, cell_stats)
    (out / "table.md").write_text(to_markdown([("table", short)]), encoding="utf-8")
    images = _plots(cells, records, cell_stats, out, arms)
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
        base = keys.get(cell.baseline_key or "", "")
        numbers = stats.row(cell_stats[cell.key])
        rows.append({"cell": cell.label, "baseline": base, **cell.overrides, **numbers})
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
        found = cell_stats[cell.key]
        row = {"cell": cell.label, "seeds": found.n}
        for metric in stats.COMPARED:
            contrast = found.contrasts.get(metric)
            row[metric] = _ci(found.means[metric], signed)
            row[f"Δ {metric}"] = _ci(contrast.diff, signed) if contrast else "baseline"
            if metric in stats.GAPS:
                reduction = contrast.reduction if contrast else None
                row[f"reduction ({metric})"] = _ci(reduction, _pct) if reduction else "—"
            row[f"p Holm t / W ({metric})"] = _p(contrast) if contrast else "—"
        rows.append(row)
    return pd.DataFrame(rows)


def arms_table(cells: Sequence[Cell], cell_stats: Mapping[str, stats.CellStats]) -> pd.DataFrame:
    """One row per arm (per grid point): the benefit (gap reduction, final and best epoch)
    and the costs (change in best val AUPRC and in best-epoch val ECE), each with its paired
    95% CI, and the Holm-adjusted paired-t p of the final gap."""
    rows = []
    for cell in cells:
        s = cell_stats[cell.key]
        row: dict[str, Any] = {"arm": cell.label, "seeds": s.n}
        for metric in GAPS:
            c = s.contrasts.get(metric)
            row[f"reduction ({metric})"] = (
                _ci(c.reduction, _pct) if c and c.reduction else "baseline"
            )
        for metric in (COST, CALIBRATION):
            c = s.contrasts.get(metric)
            row[f"Δ {metric}"] = _ci(c.diff, signed) if c else "baseline"
        row[f"p Holm t ({HEADLINE})"] = (
            f"{s.contrasts[HEADLINE].p_holm['t']:.2g}" if (HEADLINE in s.contrasts) else "—"
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _ci(interval: stats.Interval | None, show: Any) -> str:
    if interval is None or math.isnan(interval.estimate):
        return "—"
    estimate = show(interval.estimate)
    if not interval.bounded:
        return f"{estimate} [unbounded]" if math.isinf(interval.low) else estimate
    return f"{estimate} [{show(interval.low)}, {show(interval.high)}]"


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _p(contrast: stats.Contrast) -> str:
    return f"{contrast.p_holm['t']:.2g} / {contrast.p_holm['wilcoxon']:.2g}"


def findings(cells: Sequence[Cell], cell_stats: Mapping[str, stats.CellStats]) -> list[str]:
    """One plain sentence per group (width): its cell with the largest gap reduction; with
    arms, one sentence per arm."""
    if any(c.arm for c in cells):
        return [
            f"{c.label}: {_sentence(c, cells, cell_stats[c.key], 1)}"
            for c in cells
            if not c.is_baseline
        ]
    out = []
    for group in dict.fromkeys(c.group for c in cells):
        treated = [c for c in cells if c.group == group and not c.is_baseline]
        if treated:
            best = max(treated, key=lambda c: _finite(cell_stats[c.key].contrasts[HEADLINE]))
            out.append(_sentence(best, cells, cell_stats[best.key], len(treated)))
    return out


def _finite(contrast: stats.Contrast) -> float:
    r = contrast.reduction.estimate if contrast.reduction is not None else math.nan
    return r if math.isfinite(r) else -math.inf


def _sentence(cell: Cell, cells: Sequence[Cell], cell_stats: stats.CellStats, n_rates: int) -> str:
    base = next(c for c in cells if c.key == cell.baseline_key)
    where = ", ".join(
        _phrase(k, v) for k, v in cell.overrides.items() if base.overrides.get(k) == v
    )
    what = ", ".join(
        _phrase(k, v) for k, v in cell.overrides.items() if base.overrides.get(k) != v
    )
    gap, cost = cell_stats.contrasts[HEADLINE], cell_stats.contrasts[COST]
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
    arms: bool = False,
) -> list[Path]:
    """Gap curves and the benefit/cost scatter (one point per arm or cell); reduction against
    the dropout rate only for a grid (arms need not vary the rate)."""
    return [
        gap_curves(cells, records, out / "gap_curves.png"),
        *([] if arms else [reduction_plot(cells, cell_stats, out / "reduction_vs_dropout.png")]),
        benefit_cost(cells, cell_stats, out / "benefit_cost.png"),
    ]
