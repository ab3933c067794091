"""Behaviour of droplab.data: generator, loaders, validation, splits, scaling and batches."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from droplab.config import DataConfig
from droplab.data.batches import Batches
from droplab.data.errors import DataError
from droplab.data.sources import load_table, table_digest
from droplab.data.splits import prepare
from droplab.data.synthetic import COLUMNS, export_synthetic, synthesize

SMALL = DataConfig(rows=3000, fraud_rate=0.05, label_noise=0.0)


def _csv(tmp_path: Path, frame: pd.DataFrame, name: str = "data.csv") -> DataConfig:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return DataConfig(source="csv", path=str(path), target="Class")


def _frame(rows: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"a": rng.normal(size=rows), "b": rng.normal(size=rows), "Class": np.arange(rows) % 2}
    )


def _one_line_error(cfg: DataConfig, *facts: str) -> None:
    with pytest.raises(DataError) as info:
        prepare(cfg, seed=0)
    message = str(info.value)
    # a bad-data message is a single line, for the CLI to print before exit 2
    assert "\n" not in message
    for fact in facts:
        # the message names the key fact of the problem
        assert fact in message, message


def test_generator_is_deterministic(tmp_path: Path) -> None:
    a = synthesize(500, 0.02, 0.01, seed=3)
    b = synthesize(500, 0.02, 0.01, seed=3)
    # same seed, same rows
    pd.testing.assert_frame_equal(a, b)
    first = export_synthetic(tmp_path / "a.csv", 500, 0.02, 0.01, seed=3)
    second = export_synthetic(tmp_path / "b" / "b.csv", 500, 0.02, 0.01, seed=3)
    # same seed, same CSV bytes
    assert first.read_bytes() == second.read_bytes()
    # a different seed gives different rows
    assert not synthesize(500, 0.02, 0.01, seed=4)["V1"].equals(a["V1"])


def test_generator_schema() -> None:
    frame = synthesize(2000, 0.01, 0.02, seed=0)
    # the public fraud set's columns, in its order
    assert (
        tuple(frame.columns)
        == COLUMNS
        == ("Time", *[f"V{i}" for i in range(1, 29)], "Amount", "Class")
    )
    # labels are integers 0/1
    assert frame["Class"].dtype == np.int64 and set(frame["Class"]) == {0, 1}
    # Time spans two days in whole seconds, increasing
    assert frame["Time"].between(0, 172_800).all() and frame["Time"].is_monotonic_increasing
    # amounts are positive and mostly small
    assert (frame["Amount"] > 0).all() and frame["Amount"].median() < 100


def test_fraud_rate_and_label_noise() -> None:
    clean = synthesize(4000, 0.01, 0.0, seed=1)
    noisy = synthesize(4000, 0.01, 0.05, seed=1)
    # before noise exactly round(rows * fraud_rate) rows are fraud
    assert clean["Class"].sum() == 40
    # noise is drawn last, so the features do not depend on it
    pd.testing.assert_frame_equal(clean.drop(columns="Class"), noisy.drop(columns="Class"))
    # label noise flips the configured fraction of labels
    assert (clean["Class"] != noisy["Class"]).mean() == pytest.approx(0.05)


def test_stratified_split_keeps_class_proportions() -> None:
    data = prepare(SMALL.model_copy(update={"label_noise": 0.05}), seed=0)
    overall = torch.cat([data.y_train, data.y_val, data.y_test]).float().mean().item()
    for y in (data.y_train, data.y_val, data.y_test):
        # each split has the overall positive rate, within a stratification rounding tolerance
        assert y.float().mean().item() == pytest.approx(overall, abs=0.005)
    # val and test are the configured fractions of all rows
    assert (len(data.y_val), len(data.y_test)) == (600, 600)
    # tensors have the contract's dtypes
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64


def test_scaling_is_fit_on_train_only() -> None:
    scaled = prepare(SMALL, seed=0)
    raw = prepare(SMALL.model_copy(update={"scale": False}), seed=0)
    # train features are standardised
    assert scaled.x_train.mean(0).abs().max().item() < 1e-4
    assert (scaled.x_train.std(0, unbiased=False) - 1).abs().max().item() < 1e-3
    # the fitted mean is the raw train split's mean ...
    np.testing.assert_allclose(scaled.scale_mean, raw.x_train.double().mean(0).numpy(), rtol=1e-5)
    full = torch.cat([raw.x_train, raw.x_val, raw.x_test]).double().mean(0).numpy()
    # ... not the whole table's (no leakage from val/test)
    assert not np.allclose(scaled.scale_mean, full)
    # unscaled data reports the identity scaler
    assert (raw.scale_mean == 0).all() and (raw.scale_std == 1).all()


def test_train_fraction_subsamples_train_only() -> None:
    raw = SMALL.model_copy(update={"scale": False})
    full = prepare(raw, seed=0)
    half = prepare(raw.model_copy(update={"train_fraction": 0.25}), seed=0)
    # the train split shrinks to the fraction (per-class rounding aside)
    assert abs(len(half.y_train) - 0.25 * len(full.y_train)) <= 2
    # val and test keep exactly the same rows
    assert torch.equal(half.x_val, full.x_val) and torch.equal(half.x_test, full.x_test)
    # the subsample keeps the class balance
    assert half.pos_fraction() == pytest.approx(full.pos_fraction(), abs=0.01)
    tiny = prepare(SMALL.model_copy(update={"train_fraction": 0.001}), seed=0)
    # even a tiny fraction keeps one row of each class
    assert tiny.class_counts() == [2, 1]


def test_time_split_orders_train_val_test() -> None:
    data = prepare(SMALL.model_copy(update={"split": "time", "scale": False}), seed=0)
    t = data.feature_names.index("Time")
    train, val, test = (x[:, t] for x in (data.x_train, data.x_val, data.x_test))
    # train is the past, val the middle, test the future
    assert train.max() <= val.min() and val.max() <= test.min()


def test_time_split_needs_the_time_column(tmp_path: Path) -> None:
    # a time split over a table without the time column is refused
    cfg = _csv(tmp_path, _frame()).model_copy(update={"split": "time"})
    _one_line_error(cfg, "'Time'", "not found")


def test_bad_files(tmp_path: Path) -> None:
    # no path, a missing file, an empty file and a header without rows are each refused
    _one_line_error(DataConfig(source="csv"), "data.path is required")
    _one_line_error(DataConfig(source="csv", path=str(tmp_path / "no.csv")), "file not found")
    (tmp_path / "empty.csv").write_text("")
    _one_line_error(DataConfig(source="csv", path=str(tmp_path / "empty.csv")), "empty")
    (tmp_path / "header.csv").write_text("a,b,Class\n")
    _one_line_error(DataConfig(source="csv", path=str(tmp_path / "header.csv")), "no rows")


def test_bad_columns(tmp_path: Path) -> None:
    # a missing target, a text value, NaN and inf are each refused, naming the column
    _one_line_error(
        _csv(tmp_path, _frame()).model_copy(update={"target": "label"}), "'label'", "Class"
    )
    text = _frame().astype({"b": object})
    text.loc[7, "b"] = "abc"
    _one_line_error(_csv(tmp_path, text), "'b'", "not numeric", "'abc'")
    nan = _frame()
    nan.loc[[3, 5], "a"] = np.nan
    _one_line_error(_csv(tmp_path, nan), "'a'", "2 NaN")
    inf = _frame()
    inf.loc[4, "b"] = np.inf
    _one_line_error(_csv(tmp_path, inf), "'b'", "1 inf")


def test_bad_targets(tmp_path: Path) -> None:
    # one class, a continuous target and too few positives for three splits are refused
    _one_line_error(_csv(tmp_path, _frame().assign(Class=1)), "single class")
    _one_line_error(_csv(tmp_path, _frame(300).assign(Class=np.arange(300))), "regression")
    rare = _frame(200).assign(Class=0)
    rare.loc[[10, 20], "Class"] = 1
    _one_line_error(_csv(tmp_path, rare), "too few positives to stratify", "2 of 200")
    _one_line_error(
        SMALL.model_copy(update={"rows": 200, "fraud_rate": 0.005}), "too few positives"
    )


def test_unknown_sources() -> None:
    # unknown names are refused with the allowed ones listed
    _one_line_error(DataConfig(source="sklearn:mnist"), "'mnist'", "sklearn:digits")
    _one_line_error(DataConfig(source="excel"), "'excel'", "synthetic")


def test_labels_booleans_and_parquet(tmp_path: Path) -> None:
    frame = _frame().assign(
        flag=lambda f: f["a"] > 0, Class=lambda f: np.where(f["b"] > 0, "y", "n")
    )
    frame.loc[[0, 1, 2, 3], "Class"] = "z"
    path = tmp_path / "data.parquet"
    frame.to_parquet(path)
    table = load_table(DataConfig(source="parquet", path=str(path)), seed=0)
    # labels follow the sorted original values
    assert table.class_names == ("n", "y", "z") and table.y[0] == 2
    # booleans count as numeric features
    assert table.feature_names == ("a", "b", "flag") and table.x.dtype == np.float64


def test_sklearn_sets_load() -> None:
    cancer = prepare(DataConfig(source="sklearn:breast_cancer"), seed=0)
    digits = prepare(DataConfig(source="sklearn:digits"), seed=0)
    # breast_cancer is binary with 30 features
    assert (cancer.n_classes, cancer.n_features) == (2, 30)
    # digits has 10 classes of 64 pixels
    assert (digits.n_classes, digits.n_features) == (10, 64)
    # sklearn's labels are kept as is (1 = benign)
    assert load_table(DataConfig(source="sklearn:breast_cancer"), 0).class_names[1] == "benign"


def test_digest_is_stable_and_sensitive() -> None:
    first = load_table(SMALL, seed=0)
    # the same rows give the same digest
    assert load_table(SMALL, seed=0).digest == first.digest == prepare(SMALL, seed=0).digest
    x = first.x.copy()
    x[17, 3] += 1e-9
    # changing one value changes the digest
    assert table_digest(first.feature_names, x, first.y) != first.digest


def _epoch(batches: Batches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(batches)


def test_batches_cover_every_row_once_per_epoch() -> None:
    x = torch.arange(103, dtype=torch.float32).unsqueeze(1)
    y = torch.arange(103)
    batches = Batches(x, y, batch_size=10, seed=5)
    # ceil(103 / 10) batches, the last one smaller
    assert len(batches) == 11 and len(_epoch(batches)[-1][1]) == 3
    for _ in range(2):
        seen = torch.cat([yb for _, yb in batches])
        # every row appears exactly once per epoch
        assert sorted(seen.tolist()) == list(range(103))
    xb, yb = next(iter(batches))
    # x and y stay paired
    assert torch.equal(xb.squeeze(1).long(), yb)


def test_batches_are_seeded_and_leave_global_rng_alone() -> None:
    x, y = torch.randn(50, 2), torch.arange(50)
    state = torch.get_rng_state()
    a, b = Batches(x, y, 8, seed=1), Batches(x, y, 8, seed=1)
    epoch_a1, epoch_b1 = _epoch(a), _epoch(b)
    # the same seed gives the same batches
    assert all(torch.equal(p[1], q[1]) for p, q in zip(epoch_a1, epoch_b1, strict=True))
    # consecutive epochs use different permutations
    assert not torch.equal(
        torch.cat([q for _, q in _epoch(a)]), torch.cat([q for _, q in epoch_a1])
    )
    # iterating never touches the global torch RNG
    assert torch.equal(torch.get_rng_state(), state)
    clone = pickle.loads(pickle.dumps(b))
    # a pickled copy continues the same sequence of epochs
    assert torch.equal(torch.cat([q for _, q in clone]), torch.cat([q for _, q in b]))
    # without shuffling the order is the original one
    assert torch.equal(torch.cat([q for _, q in Batches(x, y, 8, 0, shuffle=False)]), y)
