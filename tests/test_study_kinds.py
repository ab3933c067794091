"""Studies search the regularizer arena through dotted keys; the report breaks the gap down by
dropout kind."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pandas as pd
import pytest

from droplab import metrics
from droplab.config import ConfigError, with_overrides
from droplab.study.report import gap_reduction
from droplab.study.sections import kinds_section
from droplab.study.space import suggest

from .conftest import tiny_config

SPACE = (
    "study.space={model.dropout_kind: {type: categorical, choices: [bernoulli, gaussian]}, "
    "train.weight_decay: {type: float, low: 1e-6, high: 1e-2, log: true}}"
)


def test_kind_and_weight_decay_are_searched_as_dotted_overrides(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, SPACE)
    trial = optuna.trial.FixedTrial({"model.dropout_kind": "gaussian", "train.weight_decay": 1e-4})
    params = suggest(trial, cfg.study.space)
    # a suggestion is one more override of the same dotted keys
    assert params == {"model.dropout_kind": "gaussian", "train.weight_decay": 1e-4}
    applied = with_overrides(cfg, params)
    assert (applied.model.dropout_kind, applied.train.weight_decay) == ("gaussian", 1e-4)
    # a choice outside the allowed kinds is refused up front, naming the key
    with pytest.raises(ConfigError, match="model.dropout_kind='spike'"):
        tiny_config(tmp_path, SPACE.replace("gaussian]", "spike]"))


def _frame() -> pd.DataFrame:
    rows = [  # (dropout, kind, final gap, best gap, auprc, ece): one control, two per kind
        (0.0, "bernoulli", 0.40, 0.20, 0.60, 0.02),
        (0.5, "bernoulli", 0.20, 0.10, 0.62, 0.01),
        (0.5, "bernoulli", 0.10, 0.10, 0.64, 0.01),
        (0.5, "gaussian", 0.30, 0.15, 0.58, 0.03),
        (0.5, "gaussian", 0.30, 0.15, 0.56, 0.03),
    ]
    return pd.DataFrame(
        [
            {"number": i, "state": "COMPLETE", "dropout": p, "width": 64.0,
             "model.dropout_kind": kind, metrics.FINAL_GAP_LOSS: final,
             metrics.BEST_GAP_LOSS: best, metrics.BEST_VAL_AUPRC: auprc,
             metrics.BEST_VAL_ECE: ece}
            for i, (p, kind, final, best, auprc, ece) in enumerate(rows)
        ]
    )  # fmt: skip


def test_report_breaks_the_gap_down_by_dropout_kind() -> None:
    frame = _frame()
    final, best = gap_reduction(frame, metrics.FINAL_GAP_LOSS), gap_reduction(frame)
    blocks = kinds_section(frame, final, best)
    table = blocks[-1][1]
    assert isinstance(table, pd.DataFrame)
    # one row per kind, the dropout-0 control left out
    assert list(table["dropout kind"]) == ["bernoulli", "gaussian"]
    assert list(table["trials"]) == [2, 2]
    # reduction = mean of 1 - gap / control gap: bernoulli (0.5 + 0.75) / 2, gaussian 0.25
    assert list(table["reduction (final)"]) == ["62.5%", "25.0%"]
    # without a searched kind there is no such section
    assert kinds_section(frame.drop(columns="model.dropout_kind"), final, best) == []
    assert not math.isnan(float(table[f"mean {metrics.BEST_VAL_ECE}"][0]))
