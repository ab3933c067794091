"""Ecosystem conventions: MLFLOW_TRACKING_URI and OPTUNA_STORAGE name the default stores, an
explicit key wins over them, and every command (replay included) follows them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from droplab.cli.main import main
from droplab.config import load_config, study_storage, tracking_uri
from droplab.config.paths import storage_source, tracking_source
from droplab.train import train

from .conftest import TINY


def test_tracking_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    cfg = load_config(None, [f"paths.runs={runs}"])
    # nothing set: the SQLite store under paths.runs
    assert tracking_uri(cfg) == f"sqlite:///{runs / 'mlflow.db'}"
    assert tracking_source(cfg).startswith("default")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    # the variable is the default when the key is unset
    assert tracking_uri(cfg) == "http://127.0.0.1:1"
    assert tracking_source(cfg) == "MLFLOW_TRACKING_URI"
    keyed = load_config(None, [f"paths.runs={runs}", "tracking.uri=sqlite:///x.db"])
    # an explicit key wins over the variable
    assert tracking_uri(keyed) == "sqlite:///x.db" and tracking_source(keyed) == "tracking.uri"


def test_optuna_storage_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    cfg = load_config(None, [f"paths.runs={runs}"])
    # nothing set: SQLite for one worker, a journal file for several
    assert study_storage(cfg) == f"sqlite:///{runs / 'optuna.db'}"
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path / 'env.db'}")
    # the variable is the default when the key is unset
    assert study_storage(cfg) == f"sqlite:///{tmp_path / 'env.db'}"
    assert storage_source(cfg) == "OPTUNA_STORAGE"
    keyed = load_config(None, [f"paths.runs={runs}", f"study.storage={tmp_path / 's.journal'}"])
    # an explicit key wins over the variable
    assert study_storage(keyed) == str(tmp_path / "s.journal")


@pytest.mark.slow
def test_replay_and_train_follow_mlflow_tracking_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.chdir(tmp_path)  # not the repository: the default config's runs/ is not it
    cfg = load_config(None, [f"paths.runs={tmp_path / 'runs'}", *TINY])
    run_id = train(cfg).run_id
    # the run went to the variable's store, not to paths.runs
    assert (tmp_path / "elsewhere.db").exists() and not (tmp_path / "runs" / "mlflow.db").exists()
    # replay without --tracking-uri finds it there and matches
    assert main(["replay", run_id]) == 0
    assert "match" in capsys.readouterr().out
    # and the train summary says which store was used and why
    assert main(["train", f"paths.runs={tmp_path / 'runs'}", *TINY]) == 0
    assert "(from MLFLOW_TRACKING_URI)" in capsys.readouterr().out


@pytest.mark.slow
def test_logging_a_model_leaves_mlflow_tracking_uri_as_it_was(tmp_path: Path) -> None:
    cfg = load_config(None, [f"paths.runs={tmp_path / 'runs'}", *TINY, "tracking.log_model=true"])
    train(cfg)
    # MLflow's fluent API sets $MLFLOW_TRACKING_URI; droplab reads it as the default store,
    # so after a model is logged the variable is as the user left it (here: unset)
    assert "MLFLOW_TRACKING_URI" not in os.environ
