"""Metric names (the only place they are spelled) and pure helpers for the honest gap.

Per-epoch keys are logged with ``step = epoch`` (from 1). ``train/*`` is the training split
evaluated in eval mode (dropout off), measured exactly like ``val/*``; ``train_running/loss``
is the mean loss of the epoch's batches with dropout on, the optimisation signal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

TRAIN_LOSS = "train/loss"
TRAIN_AUPRC = "train/auprc"
TRAIN_AUROC = "train/auroc"
VAL_LOSS = "val/loss"
VAL_AUPRC = "val/auprc"
VAL_AUROC = "val/auroc"
GAP_LOSS = "gap/loss"
GAP_AUPRC = "gap/auprc"
TRAIN_RUNNING_LOSS = "train_running/loss"
# Regression targets: RMSE in the target's original units, Gaussian NLL per row (nats).
TRAIN_RMSE = "train/rmse"
TRAIN_NLL = "train/nll"
VAL_RMSE = "val/rmse"
VAL_NLL = "val/nll"

# Calibration (issue 14), from the same eval-mode pass: ECE over 15 equal-width bins (binary:
# the positive-class probability; multi-class: the top label) and the Brier score.
TRAIN_ECE = "train/ece"
TRAIN_BRIER = "train/brier"
VAL_ECE = "val/ece"
VAL_BRIER = "val/brier"
GAP_ECE = "gap/ece"
# MC dropout: T dropout-on passes over the validation split, their probabilities averaged.
VAL_MC_LOSS = "val_mc/loss"
VAL_MC_AUPRC = "val_mc/auprc"
VAL_MC_ECE = "val_mc/ece"
VAL_MC_ENTROPY = "val_mc/entropy"

EPOCH_KEYS = (
    TRAIN_LOSS,
    TRAIN_AUPRC,
    TRAIN_AUROC,
    VAL_LOSS,
    VAL_AUPRC,
    VAL_AUROC,
    GAP_LOSS,
    GAP_AUPRC,
    TRAIN_RUNNING_LOSS,
)
# Per-epoch keys that runs logged before issue 14 lack (replay checks them only when logged).
CALIBRATION_KEYS = (TRAIN_ECE, TRAIN_BRIER, VAL_ECE, VAL_BRIER, GAP_ECE)
MC_KEYS = (VAL_MC_LOSS, VAL_MC_AUPRC, VAL_MC_ECE, VAL_MC_ENTROPY)


def dropout_rate(layer: int) -> str:
    """Per-epoch learned rate of concrete dropout after hidden ``layer`` (from 1)."""
    return f"dropout/rate_layer{layer}"


def variance_shift(layer: int) -> str:
    """Per-epoch ratio of BatchNorm ``layer``'s running variance to its eval-mode input
    variance on the validation split (Li et al. 2019); 1 = no shift."""
    return f"norm/variance_shift_layer{layer}"


REGRESSION_EPOCH_KEYS = (TRAIN_RMSE, TRAIN_NLL, VAL_RMSE, VAL_NLL)

BEST_EPOCH = "best/epoch"
BEST_VAL_LOSS = "best/val_loss"
BEST_VAL_AUPRC = "best/val_auprc"
BEST_GAP_LOSS = "best/gap_loss"
FINAL_GAP_LOSS = "final/gap_loss"
FINAL_VAL_AUPRC = "final/val_auprc"
BEST_VAL_ECE = "best/val_ece"
FINAL_VAL_ECE = "final/val_ece"
TEST_AUPRC = "test/auprc"
TEST_AUROC = "test/auroc"
TEST_LOSS = "test/loss"
TEST_RMSE = "test/rmse"
TEST_NLL = "test/nll"
BEST_VAL_RMSE = "best/val_rmse"
BEST_VAL_NLL = "best/val_nll"
FINAL_VAL_RMSE = "final/val_rmse"

SUMMARY_KEYS = (
    BEST_EPOCH,
    BEST_VAL_LOSS,
    BEST_VAL_AUPRC,
    BEST_GAP_LOSS,
    FINAL_GAP_LOSS,
    FINAL_VAL_AUPRC,
)
OPTIONAL_SUMMARY_KEYS = (BEST_VAL_ECE, FINAL_VAL_ECE)  # absent from runs logged before them

REGRESSION_SUMMARY_KEYS = (BEST_VAL_RMSE, BEST_VAL_NLL, FINAL_VAL_RMSE)

# Which way is better, for choosing the best epoch and for Optuna study directions.
MAXIMIZE = "maximize"
MINIMIZE = "minimize"
DIRECTIONS: dict[str, str] = {
    VAL_AUPRC: MAXIMIZE,
    VAL_AUROC: MAXIMIZE,
    VAL_LOSS: MINIMIZE,
    GAP_LOSS: MINIMIZE,
    BEST_VAL_AUPRC: MAXIMIZE,
    BEST_VAL_LOSS: MINIMIZE,
    BEST_GAP_LOSS: MINIMIZE,
    FINAL_GAP_LOSS: MINIMIZE,
    FINAL_VAL_AUPRC: MAXIMIZE,
    BEST_VAL_ECE: MINIMIZE,
    FINAL_VAL_ECE: MINIMIZE,
    VAL_RMSE: MINIMIZE,
    VAL_NLL: MINIMIZE,
    BEST_VAL_RMSE: MINIMIZE,
    BEST_VAL_NLL: MINIMIZE,
    FINAL_VAL_RMSE: MINIMIZE,
}
# ``auto``: val/auprc for a classification target, val/rmse for a regression one.
AUTO = "auto"
MONITORS = (AUTO, VAL_AUPRC, VAL_AUROC, VAL_LOSS, VAL_RMSE, VAL_NLL)
OBJECTIVES = tuple(k for k in DIRECTIONS if k.startswith(("best/", "final/")))

# The per-epoch metric a pruner sees for each objective, and whether to report its running best
# (``best/val_auprc`` can only improve, so its intermediate value is the best so far).
EPOCH_SOURCE: dict[str, tuple[str, bool]] = {
    BEST_VAL_AUPRC: (VAL_AUPRC, True),
    BEST_VAL_LOSS: (VAL_LOSS, True),
    BEST_GAP_LOSS: (GAP_LOSS, False),
    FINAL_GAP_LOSS: (GAP_LOSS, False),
    FINAL_VAL_AUPRC: (VAL_AUPRC, False),
    BEST_VAL_ECE: (VAL_ECE, False),
    FINAL_VAL_ECE: (VAL_ECE, False),
    BEST_VAL_RMSE: (VAL_RMSE, True),
    BEST_VAL_NLL: (VAL_NLL, True),
    FINAL_VAL_RMSE: (VAL_RMSE, False),
}


def resolve_monitor(monitor: str, record: Mapping[str, float]) -> str:
    """``auto`` -> ``val/rmse`` when the epoch record is a regression's, else ``val/auprc``."""
    if monitor != AUTO:
        return monitor
    return VAL_RMSE if VAL_RMSE in record else VAL_AUPRC


def rmse(pred: Sequence[float], target: Sequence[float]) -> float:
    """Root mean squared error."""
    n = len(target)
    return math.sqrt(sum((p - t) ** 2 for p, t in zip(pred, target, strict=True)) / n)


def gaussian_nll(pred: Sequence[float], target: Sequence[float], tau: float) -> float:
    """Mean negative log-likelihood of ``target`` under N(pred, 1/tau), in nats per row."""
    sq = sum((p - t) ** 2 for p, t in zip(pred, target, strict=True)) / len(target)
    return 0.5 * math.log(2 * math.pi) - 0.5 * math.log(tau) + 0.5 * tau * sq


def gaps(epoch: Mapping[str, float]) -> dict[str, float]:
    """The gap metrics of one epoch: positive means the model fits training better
    (``gap/ece``: positive means validation is worse calibrated)."""
    out = {GAP_LOSS: epoch[VAL_LOSS] - epoch[TRAIN_LOSS]}
    if TRAIN_AUPRC in epoch:  # a regression has no AUPRC; its gap is the loss's alone
        out[GAP_AUPRC] = epoch[TRAIN_AUPRC] - epoch[VAL_AUPRC]
    if VAL_ECE in epoch and TRAIN_ECE in epoch:
        out[GAP_ECE] = epoch[VAL_ECE] - epoch[TRAIN_ECE]
    return out


def as_cost(direction: str, value: float) -> float:
    """``value`` as a cost: itself where smaller is better (``MINIMIZE``), negated where larger
    is (``MAXIMIZE``), so one ``<`` or one ascending sort serves both directions."""
    return -value if direction == MAXIMIZE else value


def is_better(monitor: str, candidate: float, incumbent: float | None) -> bool:
    """Whether ``candidate`` beats ``incumbent`` for ``monitor`` (ties keep the earlier epoch)."""
    if incumbent is None or math.isnan(incumbent):
        return not math.isnan(candidate)
    direction = DIRECTIONS[monitor]
    return as_cost(direction, candidate) < as_cost(direction, incumbent)


def summarize(history: Sequence[Mapping[str, float]], monitor: str) -> dict[str, float]:
    """Summary metrics of a run from its per-epoch history (epochs numbered from 1).

    Returns:
        ``best/*`` at the epoch where ``monitor`` was best, and ``final/*`` at the last epoch.
        A regression's AUPRC keys are NaN (readers of classification summaries keep working)
        and it adds ``best/val_rmse``, ``best/val_nll`` and ``final/val_rmse``.
    """
    if not history:
        return {}
    monitor = resolve_monitor(monitor, history[0])
    best_i = 0
    for i, epoch in enumerate(history):
        if is_better(monitor, epoch[monitor], history[best_i][monitor] if i else None):
            best_i = i
    best, last = history[best_i], history[-1]
    calibration = (
        {BEST_VAL_ECE: best[VAL_ECE], FINAL_VAL_ECE: last[VAL_ECE]} if VAL_ECE in last else {}
    )
    summary = {
        BEST_EPOCH: float(best_i + 1),
        BEST_VAL_LOSS: best[VAL_LOSS],
        BEST_VAL_AUPRC: best.get(VAL_AUPRC, math.nan),
        BEST_GAP_LOSS: best[GAP_LOSS],
        FINAL_GAP_LOSS: last[GAP_LOSS],
        FINAL_VAL_AUPRC: last.get(VAL_AUPRC, math.nan),
        **calibration,
    }
    if VAL_RMSE in best:
        summary.update(
            {
                BEST_VAL_RMSE: best[VAL_RMSE],
                BEST_VAL_NLL: best[VAL_NLL],
                FINAL_VAL_RMSE: last[VAL_RMSE],
            }
        )
    return summary


def reduction(gap: float, baseline_gap: float) -> float:
    """Overfitting reduction ``1 - gap / gap_baseline`` (nan if the baseline does not overfit)."""
    if baseline_gap <= 0 or math.isnan(baseline_gap):
        return math.nan
    return 1.0 - gap / baseline_gap


def study_count(state: str) -> str:
    """Parent-run metric counting a study's trials in ``state`` (e.g. ``study/n_complete``)."""
    return f"study/n_{state.lower()}"


def study_best(objective: str) -> str:
    """Parent-run metric holding the study's best value of ``objective``."""
    return f"study/best_{objective.replace('/', '_')}"


def sem_name(key: str) -> str:
    """The standard error over seeds beside a mean, e.g. ``best/val_auprc_sem``."""
    return f"{key}_sem"


def study_best_ci(objective: str) -> tuple[str, str, str]:
    """Parent-run metrics of the best trial's mean over seeds and its 95% CI bounds."""
    name = study_best(objective)
    return f"{name}_mean", f"{name}_ci_low", f"{name}_ci_high"


def seed_mean(values: Sequence[float]) -> tuple[float, float]:
    """The mean over seeds and its standard error (``std(ddof=1) / sqrt(n)``; nan for one)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(values) / n
    if n < 2:
        return mean, math.nan
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def seed_aggregate(values: Sequence[float], direction: str, how: str) -> float:
    """A trial's value over its seeds: the ``mean``, or the ``lcb`` (the mean one standard
    error toward worse: minus for a maximised objective, plus for a minimised one)."""
    mean, sem = seed_mean(values)
    if how == "mean" or math.isnan(sem):
        return mean
    return mean - sem if direction == MAXIMIZE else mean + sem


# Comparison runs: counts on the parent, contrasts against the baseline on each cell run.
N_SEEDS, N_TRAINED, N_REUSED, N_FAILED = (
    "compare/n_seeds",
    "compare/n_trained",
    "compare/n_reused",
    "compare/n_failed",
)


def compare_metric(kind: str, metric: str) -> str:
    """Cell-run metric of a contrast, e.g. ``compare/reduction_final_gap_loss``."""
    return f"compare/{kind}_{metric.replace('/', '_')}"
