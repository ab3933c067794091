"""The Python API (``droplab.api``) and ``droplab config``: the CLI's code paths, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import droplab.config
from droplab import metrics
from droplab.api import CompareResult, StudyResult, TrainResult, compare, load_config, study, train
from droplab.cli.main import main
from droplab.config import ConfigError, config_hash

from .conftest import REPO, TINY

SPACE = {
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "model.width": {"type": "int", "low": 8, "high": 16},
}


def _tiny(tmp_path: Path, **extra: object) -> dict[str, object]:
    base = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in TINY)}
    return {**base, "paths.runs": str(tmp_path / "runs"), "tracking.activations": False, **extra}


def test_load_config_takes_dotted_and_double_underscore_keys(tmp_path: Path) -> None:
    cfg = load_config(None, {"model.width": 32}, model__dropout=0.25, paths__runs=str(tmp_path))
    # a dict of dotted keys and model__dropout-style keywords both override the defaults
    assert (cfg.model.width, cfg.model.dropout, cfg.paths.runs) == (32, 0.25, str(tmp_path))
    # bad input raises the CLI's one-line ConfigError
    with pytest.raises(ConfigError, match="model.dropout"):
        load_config(model__dropout=1.5)


@pytest.mark.slow
def test_train_study_compare_end_to_end(tmp_path: Path) -> None:
    fitted = train(load_config(None, _tiny(tmp_path, name="api_train")))
    frame = fitted.to_frame()
    # train returns its run, summary and one row per epoch (numbered from 1)
    assert isinstance(fitted, TrainResult) and list(frame.index) == [1, 2, 3]
    assert frame[metrics.GAP_LOSS].tolist() == [h[metrics.GAP_LOSS] for h in fitted.history]
    assert fitted.summary[metrics.BEST_EPOCH] in (1.0, 2.0, 3.0)
    cfg = load_config(
        None,
        _tiny(tmp_path, name="api_study", **{"study.n_trials": 2, "study.space": SPACE}),
        study__baselines=False,
        study__pruner="none",
    )
    result = study(cfg)
    trials = result.to_frame()
    # study returns the invocation's outcome and one row per trial of the stored study
    assert isinstance(result, StudyResult) and result.outcome.started == 2
    assert sorted(trials["number"]) == [0, 1] and set(trials["state"]) == {"COMPLETE"}
    grid = {"model.dropout": [0.0, 0.5]}
    compared = compare(
        load_config(
            None, _tiny(tmp_path, name="api_cmp"), compare__grid=grid, compare__seeds=[0, 1]
        )
    )
    table = compared.to_frame()
    # compare returns the statistics; the table has one row per cell, with the paired seeds
    assert isinstance(compared, CompareResult) and len(table) == 2
    assert table["n_seeds"].tolist() == [2.0, 2.0]


def test_config_command_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = REPO / "experiments" / "fraud_dropout_width.yaml"
    overrides = ["model.dropout=0.3", "train.lr=1e-3", "tracking.uri=postgresql://u:pw@h/db"]
    assert main(["config", str(exp), *overrides]) == 0
    printed = capsys.readouterr().out
    # secrets are masked in what it prints
    assert "u:***@h" in printed and "pw" not in printed
    saved = tmp_path / "resolved.yaml"
    saved.write_text(printed)
    # the printed config, fed back as an experiment file, has the same config hash
    assert config_hash(droplab.config.load_config(saved)) == config_hash(
        droplab.config.load_config(exp, overrides)
    )


def test_config_diff_prints_only_what_differs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--diff", "train.epochs=7"]) == 0
    # only the changed key, nested as in an experiment file
    assert yaml.safe_load(capsys.readouterr().out) == {"train": {"epochs": 7}}
    assert main(["config", "--diff"]) == 0
    # nothing changed: a comment says so
    assert capsys.readouterr().out.startswith("# no key differs")
