"""The comparison report's figures: gap curves, reduction against dropout, benefit against cost."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from droplab import metrics
from droplab.compare import stats
from droplab.compare.plan import Cell
from droplab.compare.results import SeedRecord
from droplab.compare.stats import COST, HEADLINE
from droplab.render.figures import save_figure


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
    return save_figure(fig, out)


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
    return save_figure(fig, out)


def benefit_cost(
    cells: Sequence[Cell], cell_stats: Mapping[str, stats.CellStats], out: Path
) -> Path:
    """Gap reduction (benefit) against the change in best val AUPRC (cost), 95% CI bars."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for cell in (c for c in cells if not c.is_baseline):
        found = cell_stats[cell.key]
        gain, cost = _reduction(found), found.contrasts[COST].diff
        ax.errorbar(
            [gain.estimate],
            [cost.estimate],
            xerr=_yerr([gain]),
            yerr=_yerr([cost]),
            marker="o",
            capsize=3,
        )
        ax.annotate(
            cell.label,
            (gain.estimate, cost.estimate),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set(xlabel=f"reduction of {HEADLINE} (benefit)", ylabel=f"Δ {COST} (cost if < 0)")
    ax.set_title("benefit vs cost against the baseline, 95% CIs", fontsize=9)
    return save_figure(fig, out)


def _reduction(cell: stats.CellStats) -> stats.Interval:
    contrast = cell.contrasts.get(HEADLINE)
    if contrast is None:  # a baseline: no reduction against itself, by definition
        return stats.Interval(0.0, 0.0, 0.0)
    return contrast.reduction or stats.Interval(math.nan)


def _dropout_x(cell: Cell, index: int) -> float:
    p = cell.overrides.get("model.dropout")
    return float(p) if isinstance(p, int | float) else float(index)


def _yerr(intervals: Sequence[stats.Interval]) -> np.ndarray:
    """Error bar lengths; none for unbounded or missing intervals."""
    lo = [i.estimate - i.low if i.bounded else 0.0 for i in intervals]
    hi = [i.high - i.estimate if i.bounded else 0.0 for i in intervals]
    return np.nan_to_num(np.array([lo, hi]))
