"""Faults survived for real: kill -9 mid-trial and mid-comparison, four processes on one study,
a tracking server that dies mid-study.

Each test runs the ``droplab`` command in its own processes against real stores (a journal
file, PostgreSQL, MLflow's SQLite store, ``mlflow server``), breaks it, runs the same command
again, and counts what is left: every finished trial or seed run kept and none repeated,
nothing left RUNNING, one parent run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from droplab import metrics, tags, ui
from droplab.config import Config, experiment_name, load_config, tracking_uri
from droplab.tags import CELL_KEY, FAIL_REASON, PARENT_RUN, PID, RUN_ID, SEED

from .conftest import TINY, Cluster, free_port, mlflow_server
from .study_helpers import SMALL_SPACE, by_kind, load, start_droplab, states, wait_running

pytestmark = pytest.mark.slow

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
# A fit of a few seconds, so that a kill lands inside one.
KILLABLE = ["data.rows=4000", "train.epochs=40", "tracking.activations=false"]
# The smallest study that still trains: a trial is a fraction of a second.
QUICK = ["data.rows=600", "train.epochs=1", "train.batch_size=256", "tracking.activations=false"]
# MLflow's HTTP retries, shortened: the test waits seconds, not droplab's 15 s per call.
FEW_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}


def _experiment(tmp_path: Path, name: str = "s") -> Path:
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"name: {name}\n")
    return exp


def _args(runs: Path, *extra: str) -> list[str]:
    """A study command's overrides: tiny, no pruner, local state under ``runs``."""
    return [f"paths.runs={runs}", *TINY, SMALL_SPACE, "study.pruner=none", *extra]


def _output(log: Path) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
        for p in (Path(f"{log}.out"), Path(f"{log}.err"))
    )


def _storage(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh Optuna storage: a journal file, or a new PostgreSQL database (no tables yet)."""
    if engine == "journal":
        return str(tmp_path / "runs" / "optuna.journal")
    new_database: Callable[[str], str] = request.getfixturevalue("new_database")
    return new_database("optuna")


def _runs(uri: str, experiment: str) -> list[Run]:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment} in {uri}"
    return client.search_runs([exp.experiment_id], max_results=1000)


def _mlflow(cfg: Config) -> list[Run]:
    return _runs(tracking_uri(cfg), experiment_name(cfg))


def _evidence(trials: list[FrozenTrial], runs: list[Run]) -> str:
    """Every trial and run: what a failed check must show."""
    lines = [
        f"trial {t.number} {t.state.name} pid={t.user_attrs.get(PID)} "
        f"run={t.user_attrs.get(RUN_ID)} {t.user_attrs.get(FAIL_REASON, '')}"
        for t in trials
    ]
    lines += [
        f"run {r.info.run_id} {r.data.tags.get(tags.KIND)} {r.info.status} "
        f"trial={r.data.tags.get('optuna.trial_number', '-')} "
        f"parent={r.data.tags.get(tags.PARENT, '-')}"
        for r in runs
    ]
    return "\n".join(lines)


def _assert_one_tree(trials: list[FrozenTrial], runs: list[Run]) -> None:
    """One parent run over exactly one trial run a trial, each the run its trial names."""
    why = _evidence(trials, runs)
    parents = by_kind(runs, "study")
    # exactly one parent run, however many processes started
    assert len(parents) == 1, f"{len(parents)} parent runs\n{why}"
    children = by_kind(runs, "trial")
    # one trial run a trial: numbered like the trials, none twice
    numbers = sorted(int(r.data.tags["optuna.trial_number"]) for r in children)
    assert numbers == sorted(t.number for t in trials), why
    # all under the one parent
    assert {r.data.tags[tags.PARENT] for r in children} == {parents[0].info.run_id}, why
    # each trial names its own run, and that run carries the trial's number
    named = {t.number: t.user_attrs.get(RUN_ID) for t in trials}
    assert len(set(named.values())) == len(trials), why
    assert named == {int(r.data.tags["optuna.trial_number"]): r.info.run_id for r in children}
    # nothing is left RUNNING
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == [], why


# -- 1. kill -9 mid-trial, then the same command ------------------------------------------


@pytest.mark.parametrize("engine", ["journal", "postgresql"])
def test_kill_9_mid_trial_then_the_same_command_keeps_every_finished_trial(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    n_trials = 3
    exp = _experiment(tmp_path)
    args = _args(
        tmp_path / "runs",
        f"study.storage={_storage(engine, tmp_path, request)}",
        f"study.n_trials={n_trials}",
        "study.baselines=false",
        *KILLABLE,
    )
    cfg = load_config(str(exp), args)
    first = start_droplab("study", exp, args, tmp_path / "first")
    try:
        hit = wait_running(cfg, first, finished=1, settle=0.5)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    before = load(cfg).get_trials()
    kept = {t.number: (t.values, t.user_attrs[RUN_ID]) for t in before if t.state.is_finished()}
    # kill -9 runs no handler: the trial it hit is left RUNNING, the finished one is stored
    assert [t.number for t in before if t.state == TrialState.RUNNING] == [hit.number]
    assert len(kept) >= 1 and hit.number not in kept

    second = start_droplab("study", exp, args, tmp_path / "second")
    assert second.wait(timeout=240) == 0, _output(tmp_path / "second")
    trials = load(cfg).get_trials()
    runs = _mlflow(cfg)
    why = _evidence(trials, runs)
    # trial numbers are unique and without a gap
    assert sorted(t.number for t in trials) == list(range(len(trials))), why
    # exactly n_trials finished: the killed trial was not counted, nothing extra was run
    assert sum(t.state in FINISHED_STATES for t in trials) == n_trials, why
    assert states(load(cfg)) == {"COMPLETE": n_trials, "FAIL": 1}, why
    # every trial finished before the kill is kept as it was (values and run)
    now = {t.number: (t.values, t.user_attrs[RUN_ID]) for t in trials}
    assert {n: now[n] for n in kept} == kept
    # the killed trial is FAIL with the reason, its MLflow run FAILED
    dead = next(t for t in trials if t.number == hit.number)
    assert dead.state == TrialState.FAIL and "died" in dead.user_attrs[FAIL_REASON], why
    run_of = {r.info.run_id: r for r in runs}
    assert run_of[hit.user_attrs[RUN_ID]].info.status == "FAILED", why
    _assert_one_tree(trials, runs)


# -- 2. kill -9 mid-comparison, then the same command -------------------------------------

COMPARE = [
    "compare.grid={model.dropout: [0.0, 0.5], model.width: [16]}",
    "compare.seeds=[0, 1, 2]",
    "compare.vectorize=false",  # one fit per seed run, so that the kill lands inside one
    *KILLABLE,
]
N_MEMBERS = 6  # 2 cells x 3 seeds


@dataclass(frozen=True)
class SeedRun:
    status: str
    cell: str
    seed: str
    values: int  # metric rows logged so far


def _seed_runs(db: Path) -> dict[str, SeedRun]:
    """The seed runs in MLflow's SQLite store, read as plain SQLite: opening an MlflowClient
    on a store that another process is still creating would race it on CREATE TABLE."""
    query = (
        "SELECT r.run_uuid, r.status,"
        f" MAX(CASE WHEN t.key = '{CELL_KEY}' THEN t.value END),"
        f" MAX(CASE WHEN t.key = '{SEED}' THEN t.value END),"
        " (SELECT COUNT(*) FROM metrics m WHERE m.run_uuid = r.run_uuid)"
        " FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid GROUP BY r.run_uuid"
        f" HAVING MAX(CASE WHEN t.key = '{tags.KIND}' THEN t.value END) = 'seed'"
    )
    if not db.exists():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return {row[0]: SeedRun(*row[1:]) for row in conn.execute(query)}
    except sqlite3.OperationalError:  # no tables yet, or a writer holds the lock
        return {}


def _wait_seed_running(db: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Until a seed run has FINISHED and another one is into its epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"compare exited with {proc.returncode} before the kill"
        runs = _seed_runs(db).values()
        done = any(r.status == "FINISHED" for r in runs)
        if done and any(r.status == "RUNNING" and r.values >= 2 for r in runs):
            return
        time.sleep(0.2)
    raise AssertionError(f"no seed run finished and another started within {timeout:.0f} s")


@dataclass(frozen=True)
class KilledComparison:
    at_kill: dict[str, SeedRun]  # the seed runs when kill -9 landed
    runs: list[Run]  # every run after the same command ran again
    exit_code: int
    output: str
    seeds_csv: Path


@pytest.fixture(scope="module")
def killed_comparison(tmp_path_factory: pytest.TempPathFactory) -> KilledComparison:
    """``droplab compare`` killed with SIGKILL inside a seed run, then the same command."""
    tmp = tmp_path_factory.mktemp("compare")
    exp = _experiment(tmp, "cmp")
    args = [f"paths.runs={tmp / 'runs'}", *TINY, *COMPARE]
    cfg = load_config(str(exp), args)
    db = tmp / "runs" / "mlflow.db"
    first = start_droplab("compare", exp, args, tmp / "first")
    try:
        _wait_seed_running(db, first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    at_kill = _seed_runs(db)
    second = start_droplab("compare", exp, args, tmp / "second")
    code = second.wait(timeout=240)
    seeds_csv = tmp / "runs" / "reports" / "cmp" / "seeds.csv"
    return KilledComparison(at_kill, _mlflow(cfg), code, _output(tmp / "second"), seeds_csv)


def test_killed_comparison_resumes_without_rerunning_a_finished_seed(
    killed_comparison: KilledComparison,
) -> None:
    k = killed_comparison
    assert k.exit_code == 0, k.output
    done_before = {i for i, r in k.at_kill.items() if r.status == "FINISHED"}
    # the kill landed after at least one seed run had finished, inside another one
    assert len(done_before) >= 1
    assert sum(r.status == "RUNNING" for r in k.at_kill.values()) == 1, k.at_kill
    seeds = by_kind(k.runs, "seed")
    finished = [r for r in seeds if r.info.status == "FINISHED"]
    per_member = Counter((r.data.tags[CELL_KEY], r.data.tags[SEED]) for r in finished)
    # every (cell, seed) has exactly one FINISHED seed run: none was trained twice
    assert sorted(per_member.values()) == [1] * N_MEMBERS, per_member
    # the runs finished before the kill are the very ones kept (same run ids)
    assert done_before <= {r.info.run_id for r in finished}
    table = pd.read_csv(k.seeds_csv)
    # the final table covers every cell x seed, from the FINISHED runs, reusing the old ones
    assert len(table) == N_MEMBERS and table["seed"].value_counts().to_dict() == {0: 2, 1: 2, 2: 2}
    assert set(table["run_id"]) == {r.info.run_id for r in finished}
    assert set(table[table["reused"]]["run_id"]) == done_before
    parent = by_kind(k.runs, "comparison")
    # one comparison parent, FINISHED, counting what was reused and what trained now
    assert [p.info.status for p in parent] == ["FINISHED"]
    counts = parent[0].data.metrics
    assert counts[metrics.N_REUSED] == len(done_before)
    assert counts[metrics.N_TRAINED] == N_MEMBERS - len(done_before)


def test_killed_comparison_leaves_no_seed_run_running(
    killed_comparison: KilledComparison,
) -> None:
    k = killed_comparison
    hit = [i for i, r in k.at_kill.items() if r.status == "RUNNING"]
    status = {r.info.run_id: r.info.status for r in k.runs}
    # the seed run that kill -9 interrupted is closed FAILED by the next start
    assert [status[i] for i in hit] == ["FAILED"]
    # and nothing at all is left RUNNING
    assert [i for i, s in status.items() if s == "RUNNING"] == []


# -- 3. four processes, one study of 100 trials --------------------------------------------

PROCESSES, N_TRIALS = 4, 100


@dataclass(frozen=True)
class Shared:
    """Where one study's processes meet: its Optuna storage and MLflow store, and whether
    they share one ``paths.runs`` (one machine) or each has its own (machines)."""

    storage: str
    tracking: str | None  # None: MLflow's SQLite store under the shared paths.runs
    one_machine: bool


def _shared(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Shared:
    if engine == "journal":
        return Shared(str(tmp_path / "runs" / "optuna.journal"), None, True)
    cluster: Cluster = request.getfixturevalue("cluster")
    return Shared(cluster.new_database("optuna"), cluster.tracking, False)


@pytest.mark.parametrize("engine", ["journal", "postgresql"])
def test_four_processes_run_one_study_of_100_trials_exactly(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    where = _shared(engine, tmp_path, request)
    name = f"faults-{uuid.uuid4().hex[:8]}"
    exp = _experiment(tmp_path, name)
    tracking_args = [f"tracking.uri={where.tracking}"] if where.tracking else []
    common = [f"study.storage={where.storage}", *tracking_args, f"study.n_trials={N_TRIALS}"]

    def args(i: int) -> list[str]:
        runs = tmp_path / ("runs" if where.one_machine else f"machine-{i}")
        return _args(runs, *common, "study.workers=1", *QUICK)

    env = {"OMP_NUM_THREADS": "1"}
    logs = [tmp_path / f"p{i}" for i in range(PROCESSES)]
    procs = [start_droplab("study", exp, args(i), log, env) for i, log in enumerate(logs)]
    codes = [p.wait(timeout=540) for p in procs]
    # every process exits 0
    assert codes == [0] * PROCESSES, "\n".join(_output(log) for log in logs)
    cfg = load_config(str(exp), args(0))
    trials = load(cfg).get_trials()
    runs = _runs(tracking_uri(cfg), name)
    why = _evidence(trials, runs)
    # exactly n_trials trials, all finished, none failed, numbered 0..n-1 once each
    assert states(load(cfg)) == {"COMPLETE": N_TRIALS}, why
    assert sorted(t.number for t in trials) == list(range(N_TRIALS)), why
    # the work was shared between the processes
    per_process = Counter(t.user_attrs[PID] for t in trials)
    assert len(per_process) > 1, f"trials per process: {per_process}"
    _assert_one_tree(trials, runs)
    # the study points at its one parent run, which counts every trial
    parent = by_kind(runs, "study")[0]
    assert load(cfg).user_attrs[PARENT_RUN] == parent.info.run_id
    assert parent.data.metrics[metrics.study_count("COMPLETE")] == N_TRIALS


# -- 4. the tracking server dies mid-study -------------------------------------------------


def _kill_server(children: list[ui.Child]) -> None:
    """SIGKILL the server and its workers, as a crash or a lost machine would stop it."""
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait(timeout=30)


def test_tracking_server_lost_mid_study_stops_it_and_the_same_command_completes(
    tmp_path: Path,
) -> None:
    n_trials = 3
    port, store = free_port(), f"sqlite:///{tmp_path / 'server.db'}"
    artifacts = tmp_path / "server-artifacts"
    server = mlflow_server(store, artifacts, port, tmp_path / "server-1", workers=1)
    uri = ui.base_url("127.0.0.1", port).rstrip("/")
    exp = _experiment(tmp_path)
    args = _args(
        tmp_path / "runs",
        f"tracking.uri={uri}",
        f"study.n_trials={n_trials}",
        "study.baselines=false",
        *KILLABLE,
        "train.epochs=20",  # each epoch is logged through HTTP: half the epochs, as long
    )
    cfg = load_config(str(exp), args)
    first = start_droplab("study", exp, args, tmp_path / "first", FEW_RETRIES)
    try:
        hit = wait_running(cfg, first, settle=0.2)
    finally:
        _kill_server(server)
    code = first.wait(timeout=120)
    err = Path(f"{tmp_path / 'first'}.err").read_text(errors="replace")
    said = [line for line in err.splitlines() if line.startswith("droplab: ")]
    # the study stops with exit 1 and one line that says the tracking server is gone
    assert code == 1, _output(tmp_path / "first")
    assert len(said) == 1 and f"127.0.0.1:{port} is unreachable" in said[0], err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    trials = load(cfg).get_trials()
    # the trial it was running is FAIL with the reason; none is left RUNNING, none burnt
    assert [t.state for t in trials] == [TrialState.FAIL], _evidence(trials, [])
    assert trials[0].number == hit.number and trials[0].user_attrs[FAIL_REASON]

    server = mlflow_server(store, artifacts, port, tmp_path / "server-2", workers=1)
    try:
        second = start_droplab("study", exp, args, tmp_path / "second", FEW_RETRIES)
        assert second.wait(timeout=240) == 0, _output(tmp_path / "second")
        trials = load(cfg).get_trials()
        runs = _runs(uri, cfg.name)
    finally:
        ui.stop(server)
    why = _evidence(trials, runs)
    # the same command completes exactly n_trials; the failed trial stays FAIL
    assert states(load(cfg)) == {"FAIL": 1, "COMPLETE": n_trials}, why
    # the run the dead server left RUNNING is reconciled: FAILED like its trial
    run_of = {r.info.run_id: r for r in runs}
    assert run_of[hit.user_attrs[RUN_ID]].info.status == "FAILED", why
    _assert_one_tree(trials, runs)
