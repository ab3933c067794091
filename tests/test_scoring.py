"""One sort for AUPRC and AUROC gives torchmetrics' numbers, bit for bit."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    multiclass_auroc,
    multiclass_average_precision,
)

from droplab.fit.scoring import binary_scores, score


@pytest.mark.filterwarnings("ignore::UserWarning")  # one row: torchmetrics warns of one class
@pytest.mark.parametrize("n, decimals", [(1, 3), (37, 1), (4000, 2), (12000, 6), (5000, 9)])
def test_binary_scores_equal_torchmetrics_ties_included(n: int, decimals: int) -> None:
    g = torch.Generator().manual_seed(n)
    for rate in (0.01, 0.3):
        y = (torch.rand(n, generator=g) < rate).long()
        # coarse rounding makes many tied scores; 9 decimals makes none
        probs = torch.rand(n, generator=g).add(0.3 * y).clamp(0, 1).round(decimals=decimals)
        expected = (float(binary_average_precision(probs, y)), float(binary_auroc(probs, y)))
        # the same floats, not merely close ones
        assert binary_scores(probs, y) == expected, (n, decimals, rate)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torchmetrics warns of the missing class
@pytest.mark.parametrize("label", [0, 1])
def test_a_single_class_scores_as_torchmetrics_does(label: int) -> None:
    probs, y = torch.rand(50), torch.full((50,), label)
    expected = (float(binary_average_precision(probs, y)), float(binary_auroc(probs, y)))
    # torchmetrics' conventions for an undefined recall or false-positive rate, kept
    assert binary_scores(probs, y) == pytest.approx(expected, nan_ok=True, abs=0)


def test_score_matches_torchmetrics_for_several_classes_and_nan_for_diverged_logits() -> None:
    logits, y = torch.randn(300, 4), torch.randint(0, 4, (300,))
    probs = torch.softmax(logits, dim=-1)
    # multi-class: torchmetrics' macro one-vs-rest, unchanged
    scores = score(logits, y, 4)
    assert {k: scores[k] for k in ("auprc", "auroc")} == {
        "auprc": float(multiclass_average_precision(probs, y, num_classes=4)),
        "auroc": float(multiclass_auroc(probs, y, num_classes=4)),
    }
    # a diverged run is recorded with NaN scores instead of raising
    assert all(math.isnan(v) for v in score(torch.full((5, 1), math.nan), y[:5], 2).values())
