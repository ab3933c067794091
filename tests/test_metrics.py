"""Gap definitions and summary metrics (pure helpers)."""

from __future__ import annotations

import math

from droplab import metrics


def _epoch(train_loss: float, val_loss: float, val_auprc: float) -> dict[str, float]:
    record = {
        metrics.TRAIN_LOSS: train_loss,
        metrics.VAL_LOSS: val_loss,
        metrics.TRAIN_AUPRC: 0.9,
        metrics.VAL_AUPRC: val_auprc,
    }
    record.update(metrics.gaps(record))
    return record


def test_gap_sign_and_definition() -> None:
    record = _epoch(0.1, 0.3, 0.5)
    # gap/loss = val/loss - train/loss: positive means overfitting
    assert math.isclose(record[metrics.GAP_LOSS], 0.2)
    # gap/auprc = train/auprc - val/auprc
    assert math.isclose(record[metrics.GAP_AUPRC], 0.4)


def test_summary_picks_best_epoch_by_monitor() -> None:
    history = [_epoch(0.3, 0.35, 0.4), _epoch(0.2, 0.3, 0.6), _epoch(0.05, 0.5, 0.55)]
    s = metrics.summarize(history, metrics.VAL_AUPRC)
    # the best epoch is numbered from 1 and maximises val/auprc
    assert s[metrics.BEST_EPOCH] == 2.0 and s[metrics.BEST_VAL_AUPRC] == 0.6
    # best/* come from that epoch, final/* from the last one
    assert math.isclose(s[metrics.BEST_GAP_LOSS], 0.1) and math.isclose(
        s[metrics.FINAL_GAP_LOSS], 0.45
    )
    # with val/loss as monitor the lowest val loss wins
    assert metrics.summarize(history, metrics.VAL_LOSS)[metrics.BEST_EPOCH] == 2.0


def test_reduction() -> None:
    # 1 - gap/gap_baseline: half the gap is a 50% reduction
    assert math.isclose(metrics.reduction(0.1, 0.2), 0.5)
    # a baseline that does not overfit leaves the reduction undefined
    assert math.isnan(metrics.reduction(0.1, 0.0))
