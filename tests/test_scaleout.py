"""Scale-out on real engines: Optuna on PostgreSQL, an MLflow server with a PostgreSQL store.

Worker processes run the same ``droplab study`` command, as machines would, each with its own
``paths.runs`` (nothing local is shared). The study and its MLflow hierarchy must come out
complete and consistent: n_trials finished trials, one parent run, one child run a trial.

Further tests each reproduce one concurrency bug found here (a parent run created twice,
controls enqueued twice, identical proposals, the lock missed through Optuna's cache, racing
CREATE TABLEs) and guard its fix.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import optuna
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from droplab import tags
from droplab.config import Config, load_config
from droplab.optuna_compat import storage_of, trial_id
from droplab.study import storage
from droplab.tags import PARENT_RUN
from droplab.tracking.connect import make_tracker
from droplab.tracking.store import MlflowTracker

from .conftest import TINY, Cluster
from .study_helpers import SMALL_SPACE, by_kind

pytestmark = pytest.mark.slow

WORKERS, N_TRIALS = 3, 6
# What `droplab study` calls, held until a common instant once the config is loaded: machines
# started by one Kubernetes Job or Slurm array reach the study together, when races show.
RELEASE = (
    "import sys, time\n"
    "from droplab.config import load_config\n"
    "from droplab.study.run import run\n"
    "cfg = load_config(sys.argv[2], sys.argv[3:])\n"
    "time.sleep(max(0.0, float(sys.argv[1]) - time.time()))\n"
    "run(cfg)\n"
)


@dataclass(frozen=True)
class Outcome:
    study: optuna.Study
    trials: list[FrozenTrial]
    runs: list[Run]


def _command(cluster: Cluster, tmp_path: Path, index: int, name: str) -> list[str]:
    """``droplab study``'s arguments, the same on every machine but for its local directory."""
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"name: {name}\n")
    return [
        str(exp),
        f"study.storage={cluster.storage}",
        f"tracking.uri={cluster.tracking}",
        f"paths.runs={tmp_path / f'machine-{index}'}",
        f"study.n_trials={N_TRIALS}",
        "study.pruner=none",
        SMALL_SPACE,
        *TINY,
    ]


def run_workers(
    cluster: Cluster, tmp_path: Path, extra: tuple[str, ...] = (), together: bool = False
) -> Outcome:
    """Run the workers to the end; ``together``: released at one instant after their imports."""
    name = f"scaleout-{uuid.uuid4().hex[:8]}"
    # docs/scaling_out.md: the experiment is created on the server, which picks its artifacts
    MlflowClient(tracking_uri=cluster.tracking).create_experiment(name)
    release = (
        ["-c", RELEASE, str(time.time() + 30)] if together else ["-m", "droplab.cli", "study"]
    )
    procs = [
        subprocess.Popen(
            [sys.executable, *release, *_command(cluster, tmp_path, i, name), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        for i in range(WORKERS)
    ]
    outputs = [p.communicate(timeout=540)[0] for p in procs]
    # every worker finished its share and exited 0
    assert [p.returncode for p in procs] == [0] * WORKERS, "\n\n".join(outputs)
    study = optuna.load_study(study_name=name, storage=cluster.storage)
    client = MlflowClient(tracking_uri=cluster.tracking)
    exp = client.get_experiment_by_name(name)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return Outcome(study, study.get_trials(), runs)


def _clock(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment:%H:%M:%S.%f}"


def evidence(outcome: Outcome) -> str:
    """Every run and trial, in creation order: what a failed check must show."""
    lines = [
        f"run {r.info.run_name:<22} {r.info.run_id} start={r.info.start_time} "
        f"{r.info.status} parent={r.data.tags.get(tags.PARENT, '-')}"
        for r in sorted(outcome.runs, key=lambda r: r.info.start_time)
    ]
    lines += [
        f"trial {t.number} {t.state.name} params={t.params} pid={t.user_attrs.get('droplab.pid')}"
        f" {_clock(t.datetime_start)}-{_clock(t.datetime_complete)}"
        f" {t.user_attrs.get('droplab.fail_reason', '')}"
        for t in outcome.trials
    ]
    return "\n".join(
        [f"study attr {PARENT_RUN}={outcome.study.user_attrs.get(PARENT_RUN)}"] + lines
    )


def only_parent(out: Outcome) -> Run:
    parents = by_kind(out.runs, "study")
    assert len(parents) == 1, f"{len(parents)} parent runs\n{evidence(out)}"
    return parents[0]


@pytest.fixture(scope="module")
def shared(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """Three workers started like three machines: the same command, at about the same time."""
    return run_workers(cluster, tmp_path_factory.mktemp("shared"))


def test_three_workers_share_one_study_and_one_run_tree(shared: Outcome) -> None:
    out = shared
    # exactly n_trials trials, all finished, numbered 0..n-1 without a gap or a repeat
    assert [t.state for t in out.trials] == [TrialState.COMPLETE] * N_TRIALS, evidence(out)
    assert sorted(t.number for t in out.trials) == list(range(N_TRIALS))
    # the work was shared: more than one process ran trials
    assert len({t.user_attrs["droplab.pid"] for t in out.trials}) > 1, evidence(out)
    children = by_kind(out.runs, "trial")
    # one child run per trial, each the run its trial names
    numbers = sorted(int(c.data.tags["optuna.trial_number"]) for c in children)
    assert numbers == list(range(N_TRIALS)), evidence(out)
    assert {c.info.run_id for c in children} == {
        t.user_attrs["droplab.run_id"] for t in out.trials
    }
    # nothing is left RUNNING
    assert all(r.info.status == "FINISHED" for r in out.runs), evidence(out)
    parent = only_parent(out)
    # one parent run: the one the study points at, over every trial run, with the final counts
    assert parent.info.run_id == out.study.user_attrs[PARENT_RUN]
    assert {c.data.tags[tags.PARENT] for c in children} == {parent.info.run_id}
    assert parent.data.metrics["study/n_complete"] == N_TRIALS


def test_artifacts_are_kept_by_the_server(cluster: Cluster, shared: Outcome) -> None:
    parent = next(r for r in shared.runs if r.info.run_id == shared.study.user_attrs[PARENT_RUN])
    client = MlflowClient(tracking_uri=cluster.tracking)
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    # the parent's report is readable through the server by anyone who reviews the study
    assert "report/report.html" in report
    # and it is stored under the server's artifact root, not on a worker's disk
    assert any(cluster.artifacts.rglob("report.html"))
    trial = by_kind(shared.runs, "trial")[0]
    # so are the trials' files, whichever machine ran them
    assert "manifest.json" in {a.path for a in client.list_artifacts(trial.info.run_id)}


@pytest.fixture(scope="module")
def together(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """Three workers released at one instant, one searched trial each (no controls)."""
    tmp = tmp_path_factory.mktemp("together")
    return run_workers(cluster, tmp, ("study.baselines=false", "study.n_trials=3"), together=True)


def test_workers_released_together_create_one_parent_run(together: Outcome) -> None:
    parent = only_parent(together)
    # every trial run hangs under the one parent
    children = by_kind(together.runs, "trial")
    assert {c.data.tags[tags.PARENT] for c in children} == {parent.info.run_id}


def test_workers_released_together_propose_different_points(together: Outcome) -> None:
    points = [tuple(sorted(t.params.items())) for t in together.trials]
    # no two trials are the same point: no machine repeats another's work
    assert len(set(points)) == len(points), evidence(together)


def test_a_worker_creating_the_experiment_leaves_artifacts_to_the_server(
    cluster: Cluster, tmp_path: Path
) -> None:
    name = f"name=scaleout-{uuid.uuid4().hex[:8]}"
    cfg = load_config(None, [name, f"tracking.uri={cluster.tracking}", f"paths.runs={tmp_path}"])
    tracker = make_tracker(cfg)
    assert isinstance(tracker, MlflowTracker)
    location = tracker.client.get_experiment(tracker.experiment_id).artifact_location
    # machines share no disk: artifacts go to the server, not to this worker's directory
    assert location.startswith("mlflow-artifacts:"), location


def test_workers_opening_a_fresh_database_at_once(cluster: Cluster) -> None:
    storage = cluster.new_database("optuna")
    code = "import sys; from droplab.study.storage import open_storage; open_storage(sys.argv[1])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, storage], stderr=subprocess.PIPE, text=True)
        for _ in range(WORKERS)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    # every worker can open the shared storage, however many start at the same moment
    assert [p.returncode for p in procs] == [0] * WORKERS, "\n".join(errors)


def _study_on(cluster: Cluster, runs: Path, name: str) -> tuple[optuna.Study, Config]:
    """The study as one machine opens it: its own ``paths.runs``, the shared PostgreSQL."""
    cfg = load_config(None, [f"paths.runs={runs}", f"study.storage={cluster.storage}"])
    backend = storage.open_storage(cluster.storage, heartbeat_seconds=1)
    return optuna.create_study(storage=backend, study_name=name, load_if_exists=True), cfg


def test_the_slot_lock_holds_across_machines(cluster: Cluster, tmp_path: Path) -> None:
    name = f"scaleout-{uuid.uuid4().hex[:8]}"
    (a, cfg_a), (b, cfg_b) = (_study_on(cluster, tmp_path / m, name) for m in ("m1", "m2"))
    held = threading.Event()

    def hold() -> None:
        with storage.slot_lock(a, cluster.storage, cfg_a):
            held.set()
            time.sleep(2.0)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(30)
    start = time.monotonic()
    with storage.slot_lock(b, cluster.storage, cfg_b):
        waited = time.monotonic() - start
    thread.join()
    # the second machine waits for the first one's lock although they share no disk
    assert waited > 1.0, f"took the lock after {waited:.2f} s"


def test_a_trial_left_by_a_dead_machine_is_failed(cluster: Cluster, tmp_path: Path) -> None:
    study, _ = _study_on(cluster, tmp_path, f"scaleout-{uuid.uuid4().hex[:8]}")
    trial = study.ask()
    trial.set_user_attr(tags.HOST, "another-machine")
    trial.set_user_attr(tags.PID, 12345)
    storage_of(study).record_heartbeat(trial_id(trial))  # it beat once, then its machine died
    time.sleep(3.0)  # longer than the grace period, 2 x heartbeat_seconds
    closed: list[int] = []
    storage.recover_stale(study, lambda t, reason: closed.append(t.number))
    # the next start fails it (and closes its run), so its slot is free again
    assert study.get_trials()[0].state == TrialState.FAIL and closed == [0]
