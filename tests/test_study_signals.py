"""Ctrl-C, SIGTERM and SIGKILL during a study: nothing left RUNNING, resume completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from droplab import tags
from droplab.study.run import run

from .study_helpers import (
    SMALL_SPACE,
    by_kind,
    load,
    mlflow_runs,
    states,
    study_config,
    trial_runs,
    wait_running,
)

pytestmark = pytest.mark.slow

# Long enough per trial that the signal lands mid-trial.
SLOW_TRIAL = ["data.rows=6000", "train.epochs=400", "study.baselines=false"]


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], list[str]]:
    args = [
        f"paths.runs={tmp_path / 'runs'}",
        "name=s",
        "study.pruner=none",
        "study.n_trials=2",
        "train.threads=1",
        SMALL_SPACE,
        *SLOW_TRIAL,
        *extra,
    ]
    exp = tmp_path / "exp.yaml"
    exp.write_text("name: s\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "droplab.cli", "study", str(exp), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc, args


def _wait_running(tmp_path: Path, proc: subprocess.Popen[str]) -> None:
    wait_running(study_config(tmp_path, "study.baselines=false"), proc)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_fails_the_trial_closes_runs_and_says_how_to_resume(
    tmp_path: Path, signum: int, code: int
) -> None:
    proc, _ = _start(tmp_path)
    _wait_running(tmp_path, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    # exit 130 for Ctrl-C, 143 for SIGTERM, with a hint to resume
    assert proc.returncode == code, err
    assert "resume" in err
    cfg = study_config(tmp_path, "study.baselines=false")
    # the interrupted trial is FAIL, not RUNNING
    assert states(load(cfg)) == {"FAIL": 1}
    # its MLflow run is FAILED with the reason and the parent is closed too
    _, runs = mlflow_runs(cfg)
    assert {r.info.status for r in by_kind(runs, "trial")} == {"FAILED"}
    assert "interrupted" in by_kind(runs, "trial")[0].data.tags[tags.REASON]
    assert by_kind(runs, "study")[0].info.status != "RUNNING"


def test_sigkill_then_same_command_completes_exactly_n_trials(tmp_path: Path) -> None:
    proc, _ = _start(tmp_path)
    _wait_running(tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    cfg = study_config(
        tmp_path, "study.baselines=false", "study.n_trials=2", "data.rows=1500", "train.epochs=2"
    )
    # after kill -9 the trial is left RUNNING in storage
    assert states(load(cfg)) == {"RUNNING": 1}
    run(cfg)
    study = load(cfg)
    # the next start marks the dead worker's trial FAIL and completes exactly n_trials
    assert states(study) == {"FAIL": 1, "COMPLETE": 2}
    assert "died" in study.trials[0].user_attrs["droplab.fail_reason"]
    runs = trial_runs(cfg)
    # the killed trial's MLflow run is FAILED; no run is left RUNNING
    assert runs[0].info.status == "FAILED"
    _, all_runs = mlflow_runs(cfg)
    assert all(r.info.status != "RUNNING" for r in all_runs)
