"""Calibration of predicted probabilities: ECE, Brier score and predictive entropy.

All three read the probabilities that :func:`droplab.fit.scoring.score` already computed for
AUPRC, so calibration costs no extra pass over a split. A binary target (one logit) is scored
on the positive class's probability, the quantity a fraud threshold is set on; several classes
on the top label (Guo et al. 2017).
"""

from __future__ import annotations

import torch

N_BINS = 15


def expected_calibration_error(
    probs: torch.Tensor, y: torch.Tensor, n_bins: int = N_BINS
) -> float:
    """ECE over ``n_bins`` equal-width bins of confidence.

    Args:
        probs: ``(n,)`` positive-class probabilities (binary) or ``(n, K)`` class probabilities.
        y: ``(n,)`` labels (0/1, or class indices).
        n_bins: equal-width bins on [0, 1]; a probability of exactly 1 falls in the last.

    Returns:
        ``sum_b |B_b| / n * |accuracy(B_b) - confidence(B_b)|``, where for a binary target
        "accuracy" is the bin's fraction of positives and "confidence" its mean probability.
    """
    if probs.dim() == 1:
        confidence, hit = probs, (y == 1).to(probs.dtype)
    else:
        confidence, label = probs.max(dim=-1)
        hit = (label == y).to(probs.dtype)
    bins = torch.clamp((confidence * n_bins).long(), max=n_bins - 1)
    count = torch.zeros(n_bins, dtype=probs.dtype, device=probs.device)
    count.index_add_(0, bins, torch.ones_like(confidence))
    conf_sum = torch.zeros_like(count).index_add_(0, bins, confidence)
    hit_sum = torch.zeros_like(count).index_add_(0, bins, hit)
    return float((conf_sum - hit_sum).abs().sum() / max(len(confidence), 1))


def brier(probs: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error of the probabilities: binary ``(p - y)^2``; K classes the squared
    distance to the one-hot label, summed over classes."""
    if probs.dim() == 1:
        return float(((probs - y.to(probs.dtype)) ** 2).mean())
    onehot = torch.nn.functional.one_hot(y, probs.shape[-1]).to(probs.dtype)
    return float(((probs - onehot) ** 2).sum(dim=-1).mean())


def entropy(probs: torch.Tensor) -> float:
    """Mean predictive entropy in nats (binary: of the Bernoulli with mean ``probs``)."""
    p = probs if probs.dim() > 1 else torch.stack([1 - probs, probs], dim=-1)
    return float(-(p * torch.log(p.clamp_min(1e-12))).sum(dim=-1).mean())


def nll(probs: torch.Tensor, y: torch.Tensor) -> float:
    """Mean negative log-likelihood of averaged probabilities (MC dropout's loss)."""
    p = probs if probs.dim() > 1 else torch.stack([1 - probs, probs], dim=-1)
    picked = p.gather(-1, y.long().unsqueeze(-1)).squeeze(-1)
    return float(-torch.log(picked.clamp_min(1e-12)).mean())
