"""The study report's figures: gap heatmap, gap by width band, learning curves, optimisation
history, parameter importances, Pareto front."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import CenteredNorm  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from droplab import metrics
from droplab.render.figures import save_figure

WIDTH_EDGES = (64, 256, 1024)


DROPOUT_EDGES = (0.2, 0.4, 0.8)


def width_band(width: float) -> str:
    """``"≤64"``, ``"65–256"``, ``"257–1024"`` or ``">1024"``."""
    if math.isnan(width):
        return "?"
    low = 0
    for high in WIDTH_EDGES:
        if width <= high:
            return f"≤{high}" if low == 0 else f"{low + 1}–{high}"
        low = high
    return f">{low}"


def dropout_band(p: float) -> str:
    """``"0"`` (the controls) or a half-open band such as ``"0.2–0.4"`` (0.2 < p ≤ 0.4)."""
    if math.isnan(p):
        return "?"
    if p == 0:
        return "0"
    low = 0.0
    for high in DROPOUT_EDGES:
        if p <= high:
            return f"{low:g}–{high:g}"
        low = high
    return f">{low:g}"


def band_order(labels: Sequence[str]) -> list[str]:
    """The distinct ``labels`` in reading order: narrow to wide, controls first."""
    known = [width_band(w) for w in (*WIDTH_EDGES, math.inf)]
    known += [dropout_band(p) for p in (0.0, *DROPOUT_EDGES, 1.0)]
    return sorted(set(labels), key=lambda b: known.index(b) if b in known else len(known))


def gap_heatmap(complete: pd.DataFrame, finished: pd.DataFrame, out: Path) -> Path:
    """Two panels over octaves of width x dropout bins of 0.1 (0 on its own): the mean
    ``final/gap_loss`` of the complete trials and the mean ``best/gap_loss`` of all finished."""
    panels = [(complete, metrics.FINAL_GAP_LOSS), (finished, metrics.BEST_GAP_LOSS)]
    grids = [_gap_grid(frame, key) for frame, key in panels]
    octaves = sorted({o for g in grids for o in g[0].index}) or [0]
    octaves = list(range(min(octaves), max(octaves) + 1))
    columns = list(range(0, max([int(c) for g in grids for c in g[0].columns] or [0]) + 1))
    height = 0.6 * max(len(octaves), 4) + 0.8
    fig, axes = plt.subplots(2, 1, figsize=(1.1 * max(len(columns), 4) + 2, 2 * height))
    for ax, (mean, count), (_, key) in zip(axes, grids, panels, strict=True):
        grid = mean.reindex(index=octaves, columns=columns).to_numpy(float)
        counts = count.reindex(index=octaves, columns=columns).fillna(0)
        half = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 0.0
        image = ax.imshow(
            grid, cmap="RdBu_r", norm=CenteredNorm(0.0, halfrange=half or 1.0), aspect="auto"
        )
        ax.invert_yaxis()
        for (i, j), value in np.ndenumerate(grid):
            if not math.isnan(value):
                ax.text(
                    j,
                    i,
                    f"{value:+.3f}\nn={counts.iat[i, j]:.0f}",
                    color="white" if abs(value) > 0.6 * (half or 1.0) else "black",
                    ha="center",
                    va="center",
                    fontsize=7,
                )
        ax.set_xticks(
            range(len(columns)),
            ["0" if c == 0 else f"{(c - 1) / 10:g}–{c / 10:g}" for c in columns],
            rotation=45,
        )
        ax.set_yticks(range(len(octaves)), [f"{2**o}–{2 ** (o + 1) - 1}" for o in octaves])
        ax.set_xlabel("dropout p")
        ax.set_ylabel("width (units per layer)")
        ax.set_title(f"mean {key} (red = overfitting)")
        fig.colorbar(image, ax=ax, label=key)
    return save_figure(fig, out)


def _gap_grid(frame: pd.DataFrame, key: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean and count of ``key`` per (width octave, dropout column)."""
    rows = frame.dropna(subset=["width", "dropout", key])
    keys = pd.DataFrame(
        {
            "octave": np.floor(np.log2(rows["width"].clip(lower=1))).astype(int),
            # 0 holds the dropout-0 controls; k the band ((k-1)/10, k/10].
            "column": np.ceil(rows["dropout"] * 10 - 1e-9).astype(int),
            "gap": rows[key],
        }
    )
    cells = keys.groupby(["octave", "column"])["gap"]
    return cells.mean().unstack(), cells.count().unstack()


def gap_by_width_band(complete: pd.DataFrame, finished: pd.DataFrame, out: Path) -> Path:
    """The gap against dropout, one colour per width band (points and means per 0.1 of p):
    ``final/gap_loss`` of the complete trials, and ``best/gap_loss`` of all finished ones."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    panels = [(complete, metrics.FINAL_GAP_LOSS), (finished, metrics.BEST_GAP_LOSS)]
    order = band_order(list(finished["width"].dropna().map(width_band)))
    colours = {band: f"C{i}" for i, band in enumerate(order)}
    for ax, (frame, key) in zip(axes, panels, strict=True):
        rows = frame.dropna(subset=["width", "dropout", key])
        bands = rows["width"].map(width_band)
        for band in band_order(list(bands)):
            part = rows[bands == band]
            colour = colours.get(band, "grey")
            label = f"width {band} (n={len(part)})"
            ax.plot(part["dropout"], part[key], "o", alpha=0.6, color=colour, label=label)
            means = part.groupby(part["dropout"].round(1))[key].mean()
            ax.plot(means.index, means.to_numpy(), "-", color=colour)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xlabel("dropout p")
        ax.set_title(f"{key} vs dropout (line: mean per 0.1 of p)", fontsize=10)
        if len(rows):
            ax.legend(fontsize=8)
    axes[0].set_ylabel("gap = val loss - train loss (eval mode)")
    return save_figure(fig, out)


@dataclass(frozen=True)
class Curves:
    """Per-epoch eval-mode losses of one trial, as read from its MLflow run."""

    title: str
    epochs: list[int]
    train_loss: list[float]
    val_loss: list[float]
    best_epoch: float = math.nan
    bands: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    """With ``study.seeds``: per metric key, the lowest and highest value over seeds."""


def learning_curves(curves: Sequence[Curves], out: Path) -> Path:
    """One panel per trial (up to 3): train and val loss, both in eval mode, per epoch."""
    shown = list(curves)[:3]
    fig, axes = plt.subplots(
        1, max(len(shown), 1), figsize=(5 * max(len(shown), 1), 3.8), squeeze=False
    )
    for ax, c in zip(axes[0], shown, strict=False):
        ax.plot(c.epochs, c.train_loss, "-o", ms=3, label=f"{metrics.TRAIN_LOSS} (eval mode)")
        ax.plot(c.epochs, c.val_loss, "-o", ms=3, label=metrics.VAL_LOSS)
        for i, key in enumerate((metrics.TRAIN_LOSS, metrics.VAL_LOSS)):
            if key in c.bands:  # the lines are the seeds' mean; the band their range
                low, high = c.bands[key]
                label = "min–max over seeds" if i == 0 else None
                ax.fill_between(c.epochs, low, high, color=f"C{i}", alpha=0.2, label=label)
        if not math.isnan(c.best_epoch):
            ax.axvline(c.best_epoch, color="grey", ls="--", lw=0.8, label="best epoch")
        ax.set_title(c.title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    return save_figure(fig, out)


def optimization_history(
    numbers: Sequence[int], values: Sequence[float], objective: str, maximize: bool, out: Path
) -> Path:
    """The objective of each finished trial by trial number, with the running best."""
    order = np.argsort(numbers)
    xs = np.asarray(numbers)[order]
    ys = np.asarray(values, dtype=float)[order]
    best = np.maximum.accumulate(ys) if maximize else np.minimum.accumulate(ys)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(xs, ys, "o", alpha=0.7, label="trial")
    ax.step(xs, best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial number")
    ax.set_ylabel(objective)
    ax.set_title(f"optimization history ({'maximize' if maximize else 'minimize'} {objective})")
    ax.legend(fontsize=8)
    return save_figure(fig, out)


def param_importances(importances: dict[str, float], objective: str, out: Path) -> Path:
    """Horizontal bars of each parameter's importance for ``objective`` (they sum to 1)."""
    names = sorted(importances, key=importances.__getitem__)
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(names) + 1.5))
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel(f"importance for {objective}")
    ax.set_title("hyperparameter importances")
    return save_figure(fig, out)


def pareto_front(
    points: Sequence[tuple[float, float]],
    front: Sequence[tuple[float, float]],
    objectives: Sequence[str],
    out: Path,
) -> Path:
    """All finished trials in the plane of two objectives, the Pareto front highlighted."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    if points:
        ax.plot(*zip(*points, strict=True), "o", color="lightgrey", label="trial")
    if front:
        ordered = sorted(front)
        ax.plot(*zip(*ordered, strict=True), "o-", color="tab:red", label="Pareto front")
    ax.set_xlabel(objectives[0])
    ax.set_ylabel(objectives[1])
    ax.set_title(f"Pareto front: {objectives[0]} vs {objectives[1]}")
    ax.legend(fontsize=8)
    return save_figure(fig, out)
