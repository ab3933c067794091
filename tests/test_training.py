"""fit(): honest per-epoch metrics, determinism, hooks, failures (no MLflow here)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from droplab import metrics, tags
from droplab.fit.lit_module import NonFiniteLoss
from droplab.fit.trainer import TimeBudgetExceeded, TrialStopped, fit, predict_proba
from droplab.tracking.runs import RunSpec, run_fit
from droplab.tracking.store import Tracker

from .conftest import tiny_config


def test_history_has_every_key_per_epoch_and_gap_definition(tmp_path: Path) -> None:
    result = fit(tiny_config(tmp_path))
    # one record per epoch, each with every metric of DESIGN.md section 4
    assert len(result.history) == 3
    assert all(set(metrics.EPOCH_KEYS) <= set(r) for r in result.history)
    for r in result.history:
        # gap/loss is exactly val/loss - train/loss; gap/auprc is train - val
        assert r[metrics.GAP_LOSS] == r[metrics.VAL_LOSS] - r[metrics.TRAIN_LOSS]
        assert r[metrics.GAP_AUPRC] == r[metrics.TRAIN_AUPRC] - r[metrics.VAL_AUPRC]
    # the summary's best epoch is numbered from 1
    assert 1 <= result.summary[metrics.BEST_EPOCH] <= 3


def test_eval_mode_train_loss_differs_from_running_loss_with_dropout(tmp_path: Path) -> None:
    result = fit(tiny_config(tmp_path, "model.dropout=0.6", "model.width=64"))
    last = result.history[-1]
    # with p > 0 the dropout-on running loss is not the eval-mode training loss
    assert abs(last[metrics.TRAIN_RUNNING_LOSS] - last[metrics.TRAIN_LOSS]) > 1e-3
    # and dropout inflates it: the noisy signal is worse than the eval-mode fit
    assert last[metrics.TRAIN_RUNNING_LOSS] > last[metrics.TRAIN_LOSS]


def test_same_seed_same_history_and_other_seed_differs(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "model.dropout=0.3")
    first, second = fit(cfg).history, fit(cfg).history
    # same config and seed: identical per-epoch metrics on CPU, bit for bit
    assert first == second
    other = fit(tiny_config(tmp_path, "model.dropout=0.3", "seed=1")).history
    # another seed: another init, split, masks and batch order
    assert other != first


def test_hooks_see_each_epoch_and_can_stop(tmp_path: Path) -> None:
    seen: list[int] = []

    def stop_at_two(epoch: int, values: object) -> None:
        seen.append(epoch)
        if epoch == 2:
            raise TrialStopped("pruned at epoch 2")

    # a hook that raises TrialStopped ends the fit early
    with pytest.raises(TrialStopped):
        fit(tiny_config(tmp_path, "train.epochs=5"), hooks=[stop_at_two])
    # hooks ran once per epoch, from 1, until the stop
    assert seen == [1, 2]


def test_exploding_lr_is_a_nonfinite_loss(tmp_path: Path) -> None:
    # a learning rate far too large drives the loss to NaN/inf: a named error, not silence
    with pytest.raises(NonFiniteLoss, match="became"):
        fit(tiny_config(tmp_path, "train.lr=1e12", "train.optimizer=sgd", "train.epochs=3"))


def test_time_budget(tmp_path: Path) -> None:
    # a fit past train.max_seconds stops with the reason
    with pytest.raises(TimeBudgetExceeded, match="train.max_seconds"):
        fit(tiny_config(tmp_path, "train.max_seconds=1e-9"))


def test_multiclass_and_pos_weight(tmp_path: Path) -> None:
    digits = fit(tiny_config(tmp_path, "data.source=sklearn:digits", "train.epochs=2"))
    # ten classes train with cross-entropy and macro AUPRC in [0, 1]
    assert digits.data.n_classes == 10 and 0 <= digits.history[-1][metrics.VAL_AUPRC] <= 1
    weighted = fit(tiny_config(tmp_path, "train.pos_weight=auto"))
    plain = fit(tiny_config(tmp_path))
    # pos_weight=auto (negatives/positives) changes the loss, and so the fit
    assert weighted.history[0][metrics.VAL_LOSS] != plain.history[0][metrics.VAL_LOSS]


def test_predict_scales_raw_rows_like_training(tmp_path: Path) -> None:
    result = fit(tiny_config(tmp_path))
    raw = result.data.scale_mean.tolist()
    probs = predict_proba(result, [raw])
    # a raw row at the training mean is the all-zero scaled input
    with torch.no_grad():
        zero = torch.sigmoid(result.model(torch.zeros(1, result.data.n_features))).item()
    assert math.isclose(probs[0][1], zero, rel_tol=1e-5)


def test_null_tracker_runs_without_mlflow(tmp_path: Path) -> None:
    tracked = run_fit(tiny_config(tmp_path), Tracker(), RunSpec(tags.KIND_TRAIN, "t"))
    # the null tracker accepts everything and writes nothing
    assert tracked.result.history and not (tmp_path / "runs").exists()


def test_best_state_holds_the_best_epochs_weights(tmp_path: Path) -> None:
    from droplab.fit.lit_module import LitMLP
    from droplab.fit.trainer import build_model

    cfg = tiny_config(tmp_path, "train.epochs=5", "model.width=64", "train.lr=0.01")
    result = fit(cfg)
    model = build_model(cfg, result.data)
    model.load_state_dict(result.best_state)
    module = LitMLP(
        model,
        result.data.n_classes,
        cfg.train,
        train=(result.data.x_train, result.data.y_train),
        val=(result.data.x_val, result.data.y_val),
    )
    # the saved weights reproduce the validation loss of the best epoch, not of the last one
    assert module.evaluate("val")[metrics.VAL_LOSS] == pytest.approx(
        result.summary[metrics.BEST_VAL_LOSS], abs=1e-6
    )
