"""Paired statistics against hand computation, scipy, and coverage by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from droplab import metrics
from droplab.compare import stats


def test_mean_ci_by_hand() -> None:
    i = stats.mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) * s / sqrt(n)
    # the 95% interval is mean +- t quantile x standard error
    assert i.estimate == 3.0
    assert i.low == pytest.approx(3.0 - half, rel=1e-12)
    assert i.high == pytest.approx(3.0 + half, rel=1e-12)
    # one value has a mean but no interval
    assert not stats.mean_ci([1.0]).bounded


def test_paired_t_test_matches_hand_and_scipy() -> None:
    x = np.array([0.30, 0.25, 0.41, 0.28, 0.35])
    y = np.array([0.20, 0.22, 0.30, 0.21, 0.19])
    d = x - y
    t = d.mean() / (d.std(ddof=1) / math.sqrt(5))
    # the p-value is the two-sided t(4) tail of mean / standard error
    assert stats.t_test_p(d) == pytest.approx(2 * sps.t.sf(abs(t), 4), rel=1e-12)
    # and agrees with scipy's paired t-test
    assert stats.t_test_p(d) == pytest.approx(sps.ttest_rel(x, y).pvalue, rel=1e-12)
    # identical differences: no spread, so p is 0 (all positive) or 1 (all zero)
    assert stats.t_test_p([0.1] * 5) == 0.0 and stats.t_test_p([0.0] * 5) == 1.0


def test_exact_wilcoxon_by_hand() -> None:
    # five positive differences: only 1 of the 2^5 sign patterns is as extreme, each side
    assert stats.wilcoxon_p([0.1, 0.2, 0.3, 0.4, 0.5]) == pytest.approx(2 / 32)
    # ...which is the floor with five seeds: 0.0625, never below 0.05
    assert stats.min_wilcoxon_p(5) == 0.0625
    # one negative difference of rank 2: W- = 2; subsets of {1..5} summing to <= 2 are
    # {}, {1}, {2}, so p = 2 * 3 / 32
    assert stats.wilcoxon_p([1.0, -2.0, 3.0, 4.0, 5.0]) == pytest.approx(6 / 32)


def test_holm_on_known_p_values() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, max(0.06, 0.04)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # nan stays nan and is not counted in the family (m = 2: 0.2 x 2, then 0.6 x 1)
    out = stats.holm([0.6, math.nan, 0.2])
    assert out[0] == pytest.approx(0.6) and math.isnan(out[1]) and out[2] == pytest.approx(0.4)
    # adjusted p-values are capped at 1 and never smaller than an earlier step's
    assert stats.holm([0.7, 0.6]) == [1.0, 1.0]


def test_fieller_with_a_constant_baseline_is_a_scaled_t_interval() -> None:
    x, y = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0] * 5
    mean = stats.mean_ci(x)
    ratio = stats.ratio_ci(x, y)
    # without baseline noise the ratio's interval is the mean's interval divided by the baseline
    assert ratio.low == pytest.approx(mean.low / 2) and ratio.high == pytest.approx(mean.high / 2)
    red = stats.reduction_ci(x, y)
    # reduction = 1 - ratio, so its bounds are 1 - the ratio's bounds, swapped
    assert red.estimate == pytest.approx(1 - 3 / 2)
    assert (red.low, red.high) == pytest.approx((1 - ratio.high, 1 - ratio.low))


def test_reduction_undefined_or_unbounded_when_the_baseline_does_not_overfit() -> None:
    # a baseline whose mean gap is <= 0 has nothing to reduce (metrics.reduction's rule)
    assert math.isnan(stats.reduction_ci([0.1, 0.2], [-0.1, 0.05]).estimate)
    noisy = stats.reduction_ci([0.1, 0.0, 0.1, 0.0, 0.1], [1.0, -0.9, 1.1, -1.0, 0.2])
    # a baseline mean gap not clearly above zero: a point estimate, but an unbounded interval
    assert math.isfinite(noisy.estimate) and noisy.low == -math.inf and noisy.high == math.inf


def test_intervals_cover_the_truth_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(7)
    n_sims, true_gap, true_base = 2000, 0.06, 0.10
    cov = [[0.02**2, 0.5 * 0.02 * 0.03], [0.5 * 0.02 * 0.03, 0.03**2]]
    hits_diff = hits_red = 0
    for _ in range(n_sims):
        pairs = rng.multivariate_normal([true_gap, true_base], cov, size=5)
        gap, base = pairs[:, 0], pairs[:, 1]
        d = stats.mean_ci(gap - base)
        hits_diff += d.low <= true_gap - true_base <= d.high
        r = stats.reduction_ci(gap, base)
        hits_red += r.low <= 1 - true_gap / true_base <= r.high
    # the paired t interval and Fieller's interval are exact for normal seeds: ~95% coverage
    assert 0.93 <= hits_diff / n_sims <= 0.97
    assert 0.93 <= hits_red / n_sims <= 0.97


def test_analyze_pairs_by_seed_and_holm_adjusts_across_cells() -> None:
    base = {
        metrics.FINAL_GAP_LOSS: {0: 0.10, 1: 0.12, 2: 0.11},
        metrics.BEST_GAP_LOSS: {0: 0.05, 1: 0.06},
    }
    a = {metrics.FINAL_GAP_LOSS: {0: 0.05, 1: 0.07, 2: 0.05, 3: 9.0}}  # seed 3 has no pair
    b = {metrics.FINAL_GAP_LOSS: {0: 0.09, 1: 0.12, 2: 0.10}}
    out = stats.analyze({"base": base, "a": a, "b": b}, {"base": None, "a": "base", "b": "base"})
    ca, cb = out["a"].contrasts[metrics.FINAL_GAP_LOSS], out["b"].contrasts[metrics.FINAL_GAP_LOSS]
    # only seeds present in both a cell and its baseline are paired
    assert ca.seeds == (0, 1, 2) and ca.diff.estimate == pytest.approx(-0.16 / 3)
    # the reduction is 1 - mean gap / mean baseline gap over the paired seeds
    assert ca.reduction is not None
    assert ca.reduction.estimate == pytest.approx(1 - (0.17 / 3) / (0.33 / 3))
    # Holm over the two non-baseline cells, per metric and test
    raw = [ca.p["t"], cb.p["t"]]
    assert [ca.p_holm["t"], cb.p_holm["t"]] == pytest.approx(stats.holm(raw))
    # a baseline has means but no contrasts
    assert out["base"].contrasts == {} and out["base"].n == 3
