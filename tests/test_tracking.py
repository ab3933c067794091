"""Tracking at the edges: unreachable stores, unwritable paths, runs reconciled with trials."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from droplab import tags
from droplab.cli.main import main
from droplab.config import ConfigError
from droplab.study.run import run
from droplab.tracking.connect import make_tracker
from droplab.tracking.store import MlflowTracker

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
