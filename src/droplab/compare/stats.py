"""Paired statistics for multi-seed comparisons (numpy and scipy only; no torch).

A cell and its baseline (dropout 0 at the same other values) ran the same seeds, and seed ``s``
gives both the same rows, split and batch order, so every comparison is *paired*: the
per-seed difference removes the seed-to-seed variation the two runs share.

Why Fieller for the reduction ``1 - mean(gap) / mean(gap_baseline)``: per-seed ratios
``1 - gap_s / gap0_s`` explode when one seed's baseline gap is near zero (and are undefined
when it is negative), and a paired bootstrap of 5 seeds has only 126 distinct resamples, so its
percentile interval is too narrow. Fieller's interval for a ratio of paired means inverts the
paired t-test of ``gap - rho * gap_baseline = 0``: it is exact when the per-seed values are
normal, agrees with the t-test on the differences, and says "unbounded" when the baseline's
mean gap is not clearly above zero instead of printing a meaningless finite range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from droplab import metrics

LEVEL = 0.95


GAPS = (metrics.FINAL_GAP_LOSS, metrics.BEST_GAP_LOSS)


HEADLINE = metrics.FINAL_GAP_LOSS  # the gap after the whole training budget: overfitting proper
COST = metrics.BEST_VAL_AUPRC
CALIBRATION = metrics.BEST_VAL_ECE  # absent (nan) for seed runs logged before issue 14
COMPARED = (*GAPS, metrics.BEST_VAL_AUPRC, CALIBRATION)


TESTS = ("t", "wilcoxon")


N_SEEDS, N_TRAINED, N_REUSED, N_FAILED = (
    metrics.N_SEEDS,
    metrics.N_TRAINED,
    metrics.N_REUSED,
    metrics.N_FAILED,
)


compare_metric = metrics.compare_metric


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval (nan when it cannot be had)."""

    estimate: float
    low: float = math.nan
    high: float = math.nan

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


def mean_ci(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The mean with its Student-t interval (no interval for fewer than two values)."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return Interval(math.nan)
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean)
    half = float(sps.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return Interval(mean, mean - half, mean + half)


def t_test_p(diffs: Sequence[float]) -> float:
    """Two-sided paired t-test of mean difference 0 (nan for fewer than two pairs)."""
    d = np.asarray(diffs, dtype=float)
    if len(d) < 2:
        return math.nan
    if np.all(d == d[0]):  # no spread: the t statistic is 0/0 or infinite
        return 1.0 if d[0] == 0 else 0.0
    return float(sps.ttest_1samp(d, 0.0).pvalue)


def wilcoxon_p(diffs: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank test (scipy's exact distribution up to 50 pairs)."""
    d = np.asarray(diffs, dtype=float)
    if len(d) == 0:
        return math.nan
    if np.all(d == 0):
        return 1.0
    return float(sps.wilcoxon(d, method="auto").pvalue)


def min_wilcoxon_p(n: int) -> float:
    """The smallest two-sided exact Wilcoxon p-value ``n`` pairs can give: ``2 / 2**n``."""
    return min(1.0, 2.0 / 2.0**n)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error); nan p-values stay nan, outside it."""
    p = np.asarray(pvalues, dtype=float)
    order = [int(i) for i in np.argsort(p) if not math.isnan(p[i])]
    adjusted = [math.nan] * len(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * float(p[i])))
        adjusted[i] = running
    return adjusted


def ratio_ci(num: Sequence[float], den: Sequence[float], level: float = LEVEL) -> Interval:
    """Fieller's interval for ``mean(num) / mean(den)`` from paired samples.

    Returns:
        The ratio of means; ``low = -inf, high = inf`` when ``mean(den)`` is not significantly
        different from zero (the confidence set is then not a finite interval).
    """
    x, y = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    a, b = float(x.mean()), float(y.mean())
    estimate = a / b if b != 0 else math.nan
    if len(x) < 2:
        return Interval(estimate)
    q = float(sps.t.ppf((1 + level) / 2, len(x) - 1)) ** 2 / len(x)
    cov = np.cov(x, y, ddof=1)
    quad_a = b * b - q * cov[1, 1]
    quad_b = a * b - q * cov[0, 1]
    quad_c = a * a - q * cov[0, 0]
    if quad_a <= 0:
        return Interval(estimate, -math.inf, math.inf)
    root = math.sqrt(max(quad_b * quad_b - quad_a * quad_c, 0.0))
    return Interval(estimate, (quad_b - root) / quad_a, (quad_b + root) / quad_a)


def reduction_ci(
    gaps: Sequence[float], baseline_gaps: Sequence[float], level: float = LEVEL
) -> Interval:
    """Overfitting reduction ``1 - mean(gap) / mean(baseline gap)`` with Fieller's interval."""
    estimate = metrics.reduction(float(np.mean(gaps)), float(np.mean(baseline_gaps)))
    if math.isnan(estimate):  # the baseline does not overfit on average: nothing to reduce
        return Interval(math.nan)
    ratio = ratio_ci(gaps, baseline_gaps, level)
    return Interval(estimate, 1.0 - ratio.high, 1.0 - ratio.low)


@dataclass
class Contrast:
    """One metric of a cell against its baseline on the seeds both finished."""

    metric: str
    seeds: tuple[int, ...]
    setting: Interval
    baseline: Interval
    diff: Interval
    p: dict[str, float]
    reduction: Interval | None = None
    p_holm: dict[str, float] = field(default_factory=dict)


def contrast(
    metric: str,
    setting: Mapping[int, float],
    baseline: Mapping[int, float],
    level: float = LEVEL,
) -> Contrast:
    """Pair ``setting`` and ``baseline`` values by seed and compare them."""
    seeds = tuple(
        s for s in sorted(set(setting) & set(baseline))
        if math.isfinite(setting[s]) and math.isfinite(baseline[s])
    )  # fmt: skip
    x = [setting[s] for s in seeds]
    y = [baseline[s] for s in seeds]
    d = [a - b for a, b in zip(x, y, strict=True)]
    return Contrast(
        metric=metric,
        seeds=seeds,
        setting=mean_ci(x, level),
        baseline=mean_ci(y, level),
        diff=mean_ci(d, level),
        p={"t": t_test_p(d), "wilcoxon": wilcoxon_p(d)},
        reduction=reduction_ci(x, y, level) if metric in GAPS and seeds else None,
    )


@dataclass
class CellStats:
    """A cell's own means over its finished seeds, and its contrasts against its baseline."""

    key: str
    baseline_key: str | None
    n: int
    means: dict[str, Interval]
    contrasts: dict[str, Contrast]


def analyze(
    values: Mapping[str, Mapping[str, Mapping[int, float]]],
    baseline_of: Mapping[str, str | None],
    level: float = LEVEL,
) -> dict[str, CellStats]:
    """Statistics of every cell; p-values Holm-adjusted across the non-baseline cells.

    Args:
        values: ``values[cell][metric][seed]``, the summary metrics of finished seed runs.
        baseline_of: each cell's baseline cell, ``None`` for a baseline.
        level: confidence level of every interval.

    Returns:
        One :class:`CellStats` per cell of ``values``, in its order.
    """
    out: dict[str, CellStats] = {}
    for key, by_metric in values.items():
        base = baseline_of[key]
        n = max((len(v) for v in by_metric.values()), default=0)
        means = {m: mean_ci(list(by_metric.get(m, {}).values()), level) for m in COMPARED}
        contrasts = {}
        if base is not None:
            contrasts = {
                m: contrast(m, by_metric.get(m, {}), values[base].get(m, {}), level)
                for m in COMPARED
            }
        out[key] = CellStats(key, base, n, means, contrasts)
    _adjust(list(out.values()))
    return out


def _adjust(cells: list[CellStats]) -> None:
    """Holm across cells, separately for each metric and test (each is its own family)."""
    compared = [c for c in cells if c.contrasts]
    for metric in COMPARED:
        for test in TESTS:
            adjusted = holm([c.contrasts[metric].p[test] for c in compared])
            for cell, p in zip(compared, adjusted, strict=True):
                cell.contrasts[metric].p_holm[test] = p


def row(cell: CellStats) -> dict[str, float]:
    """A cell as one flat table row: means, differences, reductions (each with its CI bounds)
    and raw and Holm-adjusted p-values; contrast columns are absent for a baseline."""
    out: dict[str, float] = {"n_seeds": float(cell.n)}
    for metric in COMPARED:
        out.update(_columns(metric, cell.means[metric]))
        contrast = cell.contrasts.get(metric)
        if contrast is None:
            continue
        out[f"{metric} paired_seeds"] = float(len(contrast.seeds))
        out.update(_columns(f"{metric} diff", contrast.diff))
        if contrast.reduction is not None:
            out.update(_columns(f"{metric} reduction", contrast.reduction))
        for test in TESTS:
            out[f"{metric} p_{test}"] = contrast.p[test]
            out[f"{metric} p_{test}_holm"] = contrast.p_holm[test]
    return out


def _columns(name: str, interval: Interval) -> dict[str, float]:
    return {
        name: interval.estimate,
        f"{name} ci_low": interval.low,
        f"{name} ci_high": interval.high,
    }


def cell_metrics(cell: CellStats) -> dict[str, float]:
    """A cell run's metrics: seed means under the seed runs' names, and its contrasts."""
    out = {m: cell.means[m].estimate for m in COMPARED}
    out[N_SEEDS] = float(cell.n)
    for metric, contrast in cell.contrasts.items():
        out[compare_metric("diff", metric)] = contrast.diff.estimate
        for test, p in contrast.p_holm.items():
            out[compare_metric(f"p_holm_{test}", metric)] = p
        if contrast.reduction is not None:
            out[compare_metric("reduction", metric)] = contrast.reduction.estimate
    return out
