"""`droplab train` end to end into a real MLflow store in tmp_path; bad input exits 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from droplab import metrics, tags
from droplab.cli.main import main
from droplab.config import tracking_uri

from .conftest import REPO, TINY, tiny_config


def _only_run(runs: Path) -> tuple[MlflowClient, object]:
    client = MlflowClient(tracking_uri=f"sqlite:///{runs}/mlflow.db")
    exp = client.get_experiment_by_name("droplab")
    found = client.search_runs([exp.experiment_id])
    assert len(found) == 1
    return client, found[0]


def test_train_logs_a_complete_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    code = main(["train", f"paths.runs={runs}", *TINY, "model.dropout=0.3"])
    out = capsys.readouterr().out
    # success exits 0 and the summary names the run and how to open the UI
    assert code == 0 and "best epoch" in out and "mlflow ui" in out
    client, run = _only_run(runs)
    # FINISHED, never left RUNNING
    assert run.info.status == "FINISHED"
    # params are the whole resolved config with dotted keys
    assert run.data.params["model.dropout"] == "0.3" and "study.space" in run.data.params
    # tags identify kind, config, data and code
    for tag in (tags.KIND, tags.CONFIG_HASH, tags.DATA_DIGEST, tags.GIT_COMMIT):
        assert tag in run.data.tags
    assert run.data.tags[tags.KIND] == "train"
    assert run.data.tags[tags.STATE] == tags.COMPLETE
    # every per-epoch metric has steps 1..epochs, and the summary metrics exist
    for key in metrics.EPOCH_KEYS:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert steps == [1, 2, 3], key
    assert set(metrics.SUMMARY_KEYS) <= set(run.data.metrics)
    # the data digest is logged as an MLflow dataset input
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.digest
    # the activations picture is an artifact of the run
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "activations.png" in artifacts
    # a reproducibility manifest (versions, commit, hash, digest, device, threads) is logged
    assert "manifest.json" in artifacts


def test_failed_fit_marks_run_failed_with_reason(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    code = main(["train", f"paths.runs={runs}", *TINY, "train.lr=1e12", "train.optimizer=sgd"])
    # an unexpected failure exits 1
    assert code == 1
    _, run = _only_run(runs)
    # the run is FAILED (not RUNNING, not FINISHED) and says why
    assert run.info.status == "FAILED"
    assert "NonFiniteLoss" in run.data.tags[tags.REASON]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["model.dropout=1.5"], "model.dropout=1.5"),
        (["model.widht=8"], "unknown key model.widht"),
        (["data.source=csv"], "data.path"),
        (["data.source=csv", "data.path=/nonexistent.csv"], "not found"),
        (["data.source=sklearn:nope"], "nope"),
        (["notakeyvalue"], "not found"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    runs = tmp_path / "runs"
    code = main(["train", *args, f"paths.runs={runs}"])
    err = capsys.readouterr().err.strip()
    # exit 2, one line naming the problem
    assert code == 2 and len(err.splitlines()) == 1 and fragment in err
    # nothing written under paths.runs
    assert not runs.exists()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("a,b,Class\n", "no rows"),
        ("a,b,Class\n1,x,0\n2,3,1\n", "not numeric"),
        ("a,b,Class\n1,nan,0\n2,3,1\n", "NaN"),
        ("a,b,Class\n1,2,0\n2,3,0\n", "single class"),
        ("a,b,label\n1,2,0\n2,3,1\n", "Class"),
        ("a,b,Class\n" + "".join(f"{i},{i},0\n" for i in range(50)) + "1,1,1\n", "few"),
    ],
)
def test_bad_csv_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, fragment: str
) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    runs = tmp_path / "runs"
    code = main(["train", "data.source=csv", f"data.path={csv}", f"paths.runs={runs}"])
    err = capsys.readouterr().err.strip()
    # bad data: exit 2, one line with the reason, nothing written
    assert code == 2 and len(err.splitlines()) == 1 and fragment.lower() in err.lower(), err
    assert not runs.exists()


def test_data_synth_exports_identical_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    # the same seed exports the same bytes
    assert main(["data", "synth", "--rows", "300", "--out", str(a)]) == 0
    assert main(["data", "synth", "--rows", "300", "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    # and the file has the credit-card schema
    assert a.read_text().splitlines()[0].startswith("Time,V1,V2")


def test_seed_toy_prints_its_two_predictions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = REPO / "experiments" / "seed_toy.yaml"
    code = main(["train", str(exp), f"paths.runs={tmp_path / 'runs'}"])
    out = capsys.readouterr().out
    # the seed article's example runs and scores its two test inputs
    assert code == 0 and "[1000.0, 3.0] ->" in out and "[20.0, 2.0] ->" in out


def test_tracking_uri_is_under_paths_runs(tmp_path: Path) -> None:
    # MLflow never falls back to ./mlflow.db: the store is under paths.runs
    assert tracking_uri(tiny_config(tmp_path)).startswith(f"sqlite:///{tmp_path}/runs/")


def test_train_on_a_real_sklearn_set_logs_its_dataset(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    code = main(["train", f"paths.runs={runs}", *TINY, "data.source=sklearn:breast_cancer"])
    # a non-URL data source is logged as an MLflow dataset input (MLflow refuses bare strings)
    assert code == 0
    _, run = _only_run(runs)
    assert run.info.status == "FINISHED"
    assert run.inputs.dataset_inputs[0].dataset.name == "sklearn:breast_cancer"
