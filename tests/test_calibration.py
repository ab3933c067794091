"""Calibration (ECE, Brier) against hand-computed values, and MC dropout."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from droplab import metrics
from droplab.fit import regularizers
from droplab.fit.calibration import brier, entropy, expected_calibration_error
from droplab.fit.model import MLP
from droplab.fit.trainer import fit

from .conftest import tiny_config


def test_a_perfectly_calibrated_toy_has_zero_ece() -> None:
    # 0.25 on four rows with one positive, 0.75 on four rows with three positives
    probs = torch.tensor([0.25] * 4 + [0.75] * 4)
    y = torch.tensor([1, 0, 0, 0, 1, 1, 1, 0])
    # each bin's frequency of positives equals its mean probability
    assert expected_calibration_error(probs, y) == pytest.approx(0.0, abs=1e-7)
    # Brier by hand: (3 x 0.25^2 + 0.75^2) x 2 / 8 = 0.1875
    assert brier(probs, y) == pytest.approx(0.1875)


def test_a_miscalibrated_toy() -> None:
    # 0.9 on four rows with two positives (one bin), 0.1 on two negatives (another bin)
    probs = torch.tensor([0.9, 0.9, 0.9, 0.9, 0.1, 0.1])
    y = torch.tensor([1, 1, 0, 0, 0, 0])
    # ECE = 4/6 x |0.9 - 0.5| + 2/6 x |0.1 - 0| = 0.3
    assert expected_calibration_error(probs, y) == pytest.approx(0.3)
    # Brier = (2 x 0.01 + 2 x 0.81 + 2 x 0.01) / 6
    assert brier(probs, y) == pytest.approx((0.02 + 1.62 + 0.02) / 6)


def test_multiclass_ece_uses_the_top_label() -> None:
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    y = torch.tensor([0, 1, 2])
    # bin of 0.7: accuracy 1/2, confidence 0.7; bin of 0.8: accuracy 1, confidence 0.8
    assert expected_calibration_error(probs, y) == pytest.approx(2 / 3 * 0.2 + 1 / 3 * 0.2)
    # Brier: squared distance to the one-hot label, summed over classes, averaged over rows
    expected = ((0.09 + 0.04 + 0.01) + (0.49 + 0.64 + 0.01) + (0.01 + 0.01 + 0.04)) / 3
    assert brier(probs, y) == pytest.approx(expected)
    # entropy of a certain prediction is 0; of a fair coin log 2
    assert entropy(torch.tensor([0.0, 1.0])) == pytest.approx(0.0, abs=1e-9)
    assert entropy(torch.tensor([0.5])) == pytest.approx(math.log(2))


def test_mc_with_one_sample_is_one_dropout_on_pass() -> None:
    torch.manual_seed(0)
    model = MLP(6, 1, width=32, depth=2, dropout=0.5)
    x = torch.randn(40, 6)
    before = torch.get_rng_state()
    mc = regularizers.mc_probabilities(model, x, samples=1, chunk=1000, seed=7)
    # the global RNG stream is left where it was (training draws the same masks)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(7)
    single = torch.sigmoid(model.train()(x).squeeze(-1))
    # T = 1: exactly one dropout-on pass
    assert torch.equal(mc, single)
    eval_probs = torch.sigmoid(model.eval()(x).squeeze(-1))
    # and, for p > 0, not the eval-mode prediction
    assert not torch.allclose(mc, eval_probs)
    # T = 16 in one batched pass averages 16 different masks: closer to eval mode than one
    mc16 = regularizers.mc_probabilities(model, x, samples=16, chunk=1000, seed=7)
    assert (mc16 - eval_probs).abs().mean() < (mc - eval_probs).abs().mean()


def test_calibration_and_mc_metrics_are_logged_and_training_is_unchanged(tmp_path: Path) -> None:
    base = ("tracking.enabled=false", "model.dropout=0.5")
    plain = fit(tiny_config(tmp_path, *base))
    mc = fit(tiny_config(tmp_path, *base, "eval.mc_samples=8"))
    last = mc.history[-1]
    # calibration of both splits, in eval mode, every epoch, and their gap
    for key in (*metrics.CALIBRATION_KEYS, *metrics.MC_KEYS):
        assert all(key in epoch for epoch in mc.history), key
    assert last[metrics.GAP_ECE] == last[metrics.VAL_ECE] - last[metrics.TRAIN_ECE]
    # summary: the best epoch's and the last epoch's validation ECE
    assert mc.summary[metrics.FINAL_VAL_ECE] == last[metrics.VAL_ECE]
    # MC dropout does not touch the training's random stream: every other number is identical
    assert [{k: e[k] for k in plain.history[0]} for e in mc.history] == plain.history
    # and the MC prediction differs from the deterministic one (p = 0.5)
    assert last[metrics.VAL_MC_ECE] != last[metrics.VAL_ECE]
