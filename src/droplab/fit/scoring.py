"""AUPRC and AUROC of a split: torchmetrics' numbers, bit for bit, from one sort.

``binary_average_precision`` and ``binary_auroc`` each validate their input (``torch.unique``,
a sort) and build the same binary classification curve (another sort): four sorts of the split
every epoch, twice (train and val). :func:`binary_scores` sorts once and applies torchmetrics'
own arithmetic (1.9: ``_binary_clf_curve``, ``_binary_precision_recall_curve_compute``,
``_binary_average_precision_compute``, ``_binary_roc_compute``, ``_auc_compute_without_check``)
to that one curve, so the floats are the same (``tests/test_scoring.py`` checks, ties included).
The order of tied scores never matters: the curve is read at the end of each run of ties.
"""

from __future__ import annotations

import math

import torch
from torchmetrics.functional.classification import (
    multiclass_auroc,
    multiclass_average_precision,
)

from droplab.fit import calibration


def score(logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> dict[str, float]:
    """AUPRC (average precision), AUROC (macro one-vs-rest for several classes), ECE and Brier.

    Non-finite logits score NaN instead of raising, so a diverged run is still recorded.
    """
    if not torch.isfinite(logits).all():
        return {"auprc": math.nan, "auroc": math.nan, "ece": math.nan, "brier": math.nan}
    if n_classes == 2:
        return score_probs(torch.sigmoid(logits.squeeze(-1)), y, n_classes)
    return score_probs(torch.softmax(logits, dim=-1), y, n_classes)


def score_probs(probs: torch.Tensor, y: torch.Tensor, n_classes: int) -> dict[str, float]:
    """:func:`score` from probabilities: ``(n,)`` positive-class ones, or ``(n, K)``."""
    if n_classes == 2:
        auprc, auroc = binary_scores(probs, y)
    else:
        auprc = float(
            multiclass_average_precision(probs, y, num_classes=n_classes, validate_args=False)
        )
        auroc = float(multiclass_auroc(probs, y, num_classes=n_classes, validate_args=False))
    return {
        "auprc": auprc,
        "auroc": auroc,
        "ece": calibration.expected_calibration_error(probs, y),
        "brier": calibration.brier(probs, y),
    }


@torch.no_grad()
def regression_scores(
    pred: torch.Tensor, y: torch.Tensor, tau: float, target_std: float = 1.0
) -> dict[str, float]:
    """RMSE and Gaussian NLL (per row, nats) in the target's original units.

    ``pred`` and ``y`` are standardised (``(value - mean) / target_std``); ``tau`` is the
    noise precision in those units. Undoing the scaling multiplies errors by ``target_std``
    and adds ``log(target_std)`` to the NLL (the density's change of variables).
    """
    if not torch.isfinite(pred).all():
        return {"rmse": math.nan, "nll": math.nan}
    mse = float(torch.mean((pred.double() - y.double()) ** 2))
    nll = 0.5 * math.log(2 * math.pi) - 0.5 * math.log(tau) + 0.5 * tau * mse
    return {"rmse": math.sqrt(mse) * target_std, "nll": nll + math.log(target_std)}


@torch.no_grad()
def binary_scores(probs: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """``(average precision, AUROC)`` of probabilities in [0, 1] against 0/1 labels.

    Equal to ``binary_average_precision(probs, target)`` and ``binary_auroc(probs, target)``.
    """
    fps, tps = _curve(probs.flatten(), target.flatten())
    return _average_precision(fps, tps, target), _auroc(fps, tps)


def _curve(preds: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """False and true positives at each distinct threshold, highest first (one sort)."""
    preds, order = torch.sort(preds, descending=True)
    distinct = torch.where(preds[1:] - preds[:-1])[0]
    ends = torch.nn.functional.pad(distinct, [0, 1], value=target.size(0) - 1)
    positives = (target[order] == 1).to(torch.long)
    tps = torch.cumsum(positives * 1.0, dim=0)[ends]
    return 1 + ends - tps, tps


def _average_precision(fps: torch.Tensor, tps: torch.Tensor, target: torch.Tensor) -> float:
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    if (target == 0).all():  # torchmetrics: no positives, recall undefined, set to one
        recall = torch.ones_like(recall)
    one, zero = torch.ones(1, dtype=precision.dtype), torch.zeros(1, dtype=recall.dtype)
    precision = torch.cat([precision.flip(0), one.to(precision.device)])
    recall = torch.cat([recall.flip(0), zero.to(recall.device)])
    precision = torch.where(torch.isnan(precision), torch.zeros_like(precision), precision)
    recall = torch.where(torch.isnan(recall), torch.zeros_like(recall), recall)
    return float(-torch.sum((recall[1:] - recall[:-1]) * precision[:-1]))


def _auroc(fps: torch.Tensor, tps: torch.Tensor) -> float:
    zero = torch.zeros(1, dtype=tps.dtype, device=tps.device)
    tps, fps = torch.cat([zero, tps]), torch.cat([zero, fps])
    fpr = torch.zeros_like(fps) if fps[-1] <= 0 else fps / fps[-1]
    tpr = torch.zeros_like(tps) if tps[-1] <= 0 else tps / tps[-1]
    return float(torch.trapz(tpr, fpr, dim=-1) * 1.0)
