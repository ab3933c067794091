"""Config: defaults <- experiment <- CLI overrides, validated into frozen typed objects."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from droplab.config import (
    ConfigError,
    config_hash,
    flatten,
    load_config,
    mask_secrets,
    study_storage,
    to_dict,
    tracking_uri,
)


def test_defaults_experiment_and_overrides_stack(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text("name: e1\nmodel:\n  width: 64\n  dropout: 0.2\n")
    cfg = load_config(exp, ["model.dropout=0.3", "compare.seeds=[0,1,2]"])
    # the experiment overrides the default width; the CLI overrides the experiment's dropout
    assert (cfg.name, cfg.model.width, cfg.model.dropout) == ("e1", 64, 0.3)
    # YAML-typed override values: a list becomes a frozen tuple
    assert cfg.compare.seeds == (0, 1, 2)
    # keys the experiment did not mention keep their defaults
    assert cfg.model.depth == 2 and cfg.train.optimizer == "adam"


def test_config_is_frozen() -> None:
    cfg = load_config()
    # configs are values: nothing can change them after validation
    with pytest.raises(ValidationError, match="frozen"):
        cfg.model.width = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("model.dropout=1.0", "model.dropout=1.0"),
        ("model.dropout=-0.1", "0 <= dropout < 1"),
        ("model.width=0", "model.width=0"),
        ("train.epochs=0", "train.epochs=0"),
        ("train.lr=0", "train.lr=0"),
        ("model.widht=3", "unknown key model.widht"),
        ("foo=1", "unknown key foo"),
        ("model.width=abc", "model.width='abc' has the wrong type"),
        ("model.width=2.5", "wrong type"),
        ("seed=true", "seed=True has the wrong type"),
        ("data.train_fraction=0", "data.train_fraction"),
        ("data.val_fraction=1.2", "data.val_fraction"),
        ("data.val_fraction=0.85", "a sum < 1"),
        ("study.sampler=bogus", "study.sampler='bogus'"),
        ("study.pruner=bogus", "study.pruner='bogus'"),
        ("study.objectives=[val/bogus]", "study.objectives"),
        ("train.monitor=train/loss", "train.monitor"),
        ("train.pos_weight=-2", "train.pos_weight"),
        ("model.dropout=[0.1]", "list of model.depth=2 rates"),
        ("study.space={model.dropout: {type: float, low: 0.9, high: 0.1}}", "low=0.9"),
        ("study.space={model.dropout: {type: float, low: 0.0, high: 1.0}}", "dropout < 1"),
        ("study.space={model.widht: {type: int, low: 1, high: 4}}", "unknown key model.widht"),
        ("compare.grid={model.dropout: []}", "non-empty list"),
        ("compare.grid={model.width: [0, 8]}", "model.width=0"),
        ("noequals", "not key=value"),
    ],
)
def test_bad_values_name_key_value_and_rule(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    message = str(err.value)
    # one line that names the problem
    assert "\n" not in message and fragment in message


def test_malformed_and_missing_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    # malformed YAML is a config error with the file name, not a traceback
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(bad)
    # a missing experiment file is named
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_cannot_name_code(tmp_path: Path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    # safe loading refuses python tags: a config can never run code
    with pytest.raises(ConfigError):
        load_config(evil)


def test_hash_ignores_execution_details_but_not_science() -> None:
    base = config_hash(load_config())
    # threads, names and paths do not change what a run computes
    assert config_hash(load_config(None, ["train.threads=3", "name=x", "paths.runs=/y"])) == base
    # dropout and seed do
    assert config_hash(load_config(None, ["model.dropout=0.5"])) != base
    assert config_hash(load_config(None, ["seed=1"])) != base


def test_flatten_and_default_locations(tmp_path: Path) -> None:
    cfg = load_config(None, [f"paths.runs={tmp_path}"])
    flat = flatten(to_dict(cfg))
    # params are dotted keys covering every section
    assert flat["model.width"] == 256 and flat["train.lr"] == 0.001 and "study.space" in flat
    # local state lives under paths.runs
    assert tracking_uri(cfg) == f"sqlite:///{tmp_path}/mlflow.db"
    assert study_storage(cfg) == f"sqlite:///{tmp_path}/optuna.db"
    # several workers default to a journal file (SQLite cannot take several writers)
    multi = load_config(None, [f"paths.runs={tmp_path}", "study.workers=2"])
    assert study_storage(multi) == f"{tmp_path}/optuna.journal"


def test_secrets_are_masked() -> None:
    # a password in a URL never reaches a log line
    assert mask_secrets("postgresql://u:hunter2@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert mask_secrets("sqlite:///runs/optuna.db") == "sqlite:///runs/optuna.db"
