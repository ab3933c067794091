"""Tracking at the edges: unreachable stores, unwritable paths, runs reconciled with trials."""

from __future__ import annotations

import ast
import socket
import time
from pathlib import Path

import pytest

import droplab
from droplab import tags
from droplab.cli.main import main
from droplab.config import ConfigError
from droplab.study.run import run
from droplab.tracking.connect import make_tracker, read_store
from droplab.tracking.store import MlflowTracker, RunNotFound, Tracker

from .conftest import TINY
from .study_helpers import load, mlflow_runs, study_config, trial_runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tracking_server_down_at_start_refuses_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"http://user:pw@127.0.0.1:{_free_port()}"
    runs = tmp_path / "runs"
    exp = tmp_path / "exp.yaml"
    exp.write_text("name: down\n")
    code = main(["study", str(exp), f"paths.runs={runs}", f"tracking.uri={uri}", *TINY])
    err = capsys.readouterr().err
    # refused with exit 2 and one line naming the URI, password masked
    assert code == 2 and "unreachable" in err and "pw@" not in err
    # before any study or file was created
    assert not runs.exists()


def test_unwritable_runs_dir_is_bad_input(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    # paths.runs under a regular file cannot be created: one clear line
    with pytest.raises(ConfigError, match="not writable"):
        make_tracker(study_config(tmp_path, f"paths.runs={blocker}/runs"))


def test_runs_left_running_are_reconciled_on_the_next_start(tmp_path: Path) -> None:
    cfg = study_config(tmp_path, "study.n_trials=2", "study.baselines=false")
    run(cfg)
    client, _ = mlflow_runs(cfg)
    stale = trial_runs(cfg)[1].info.run_id
    # simulate a store that was down when the trial ended: its run stayed RUNNING
    client.update_run(stale, status="RUNNING")
    run(cfg)  # nothing new to run, but the start reconciles
    # the run now matches its COMPLETE trial again
    assert client.get_run(stale).info.status == "FINISHED"
    assert load(cfg).trials[1].state.name == "COMPLETE"


def test_a_logged_history_writes_every_epoch_past_mlflows_batch_limit(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(store, "history", str(tmp_path / "artifacts"))
    run_id = tracker.start("r", "train", {}, None)
    history = [{f"m{k}": float(epoch * k) for k in range(30)} for epoch in range(1, 41)]
    tracker.log_history(run_id, history)  # 1200 values: more than one log_batch takes
    # every value is written at its epoch (step), epochs numbered from 1
    for key in ("m0", "m29"):
        logged = tracker.client.get_metric_history(run_id, key)
        assert sorted((m.step, m.value) for m in logged) == [
            (e, history[e - 1][key]) for e in range(1, 41)
        ]


def test_epoch_writes_run_behind_the_fit_and_their_errors_surface(tmp_path: Path) -> None:
    from mlflow.exceptions import MlflowException

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(store, "epochs", str(tmp_path / "artifacts"))
    run_id = tracker.start("r", "train", {}, None)
    for epoch in range(1, 6):
        tracker.log_epoch(run_id, {"loss": float(epoch)}, epoch)
    tracker.flush()
    # every epoch is written, in order, at its step
    history = tracker.client.get_metric_history(run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(e, float(e)) for e in range(1, 6)]
    # a failed write is raised by flush...
    missing = "0" * 32
    tracker.log_epoch(missing, {"loss": 1.0}, 1)
    with pytest.raises(MlflowException):
        tracker.flush()
    # ...and the next run writes again
    tracker.log_epoch(run_id, {"loss": 6.0}, 6)
    tracker.flush()
    assert len(tracker.client.get_metric_history(run_id, "loss")) == 6
    # without a flush, a failed write stops a later epoch's log_epoch
    tracker.log_epoch(missing, {"loss": 1.0}, 1)
    with pytest.raises(MlflowException):
        for epoch in range(2, 200):
            tracker.log_epoch(missing, {"loss": 1.0}, epoch)
            time.sleep(0.05)
    # after a failed write the queued ones are skipped, not retried one by one
    tracker.log_epoch(missing, {"loss": 1.0}, 1)
    tracker.log_epoch(run_id, {"loss": 7.0}, 7)
    # and ending a run on a failure path still closes it
    tracker.end(run_id, tags.FAILED, tags.FAIL, "store trouble")
    run = tracker.client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.metrics["loss"] == 6.0


def _mlflow_imports(path: Path) -> list[str]:
    """Every ``import mlflow...`` / ``from mlflow... import`` in ``path``, late ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] == "mlflow"]
    return found


def test_only_the_tracking_package_imports_mlflow() -> None:
    package = Path(droplab.__file__).parent
    outside = [p for p in package.rglob("*.py") if "tracking" not in p.relative_to(package).parts]
    # the scan sees the package (and would see a late import inside a function)
    assert len(outside) > 40 and _mlflow_imports(package / "tracking" / "store.py")
    # tracking/ is the only door to MLflow, reads included
    assert [hit for p in outside for hit in _mlflow_imports(p)] == []


def test_null_tracker_reads_find_nothing() -> None:
    tracker = Tracker()
    run_id = tracker.start("r", tags.KIND_TRAIN, {}, None)
    # searches and histories are empty: nothing was stored
    assert tracker.find_runs({tags.KIND: tags.KIND_TRAIN}) == []
    assert tracker.metric_history(run_id, "loss") == {}
    # a run or an artifact cannot be read back: one clear error, not a None to trip over
    with pytest.raises(RunNotFound, match="tracking is off"):
        tracker.get_run(run_id)
    with pytest.raises(RunNotFound, match="tracking is off"):
        tracker.download(run_id, tags.MANIFEST, Path("."))
    # and it has no store to name
    assert tracker.uri == ""


@pytest.mark.slow
def test_mlflow_reads_give_plain_runs(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "reads", str(tmp_path / "artifacts"))
    run_id = tracker.start("r", tags.KIND_SEED, {tags.SEED: "3"}, None)
    other = tracker.start("o", tags.KIND_SEED, {tags.SEED: "4"}, None)
    tracker.log_params(run_id, {"model.width": 16})
    tracker.log_metrics(run_id, {"loss": 2.0}, step=1)
    tracker.log_metrics(run_id, {"loss": 0.5}, step=2)
    tracker.log_metrics(run_id, {"loss": 1.0}, step=2)  # a step logged twice keeps both
    tracker.log_dict(run_id, {"a": 1}, tags.MANIFEST)
    tracker.end(run_id, tags.FINISHED, tags.COMPLETE)
    # a search matches every tag and the status, oldest first
    assert [r.id for r in tracker.find_runs({tags.KIND: tags.KIND_SEED})] == [run_id, other]
    assert [r.id for r in tracker.find_runs({tags.SEED: "3"}, status=tags.FINISHED)] == [run_id]
    assert tracker.find_runs({tags.SEED: "4"}, status=tags.FINISHED) == []
    # a run reads back as plain data: status, tags, params, the latest value of each metric
    run = read_store(uri).get_run(run_id)
    assert (run.id, run.status, run.metrics, run.params) == (
        run_id,
        tags.FINISHED,
        {"loss": 1.0},
        {"model.width": "16"},
    )
    assert run.tags[tags.STATE] == tags.COMPLETE and run.tags[tags.SEED] == "3"
    # the history keeps every value of a step, in the order logged
    assert tracker.metric_history(run_id, "loss") == {1: [2.0], 2: [0.5, 1.0]}
    local = tracker.download(run_id, tags.MANIFEST, tmp_path)
    assert local.read_text(encoding="utf-8").strip().startswith("{")
    # an unknown run is one clear error
    with pytest.raises(RunNotFound, match="not found"):
        tracker.get_run("f" * 32)
    # a store opened to read by id has no experiment to search or write in
    with pytest.raises(RuntimeError, match="opened to read runs by id"):
        read_store(uri).find_runs({})
