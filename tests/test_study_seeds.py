"""Seed-aware studies (``study.seeds``): every trial trains the same seeds, in lockstep where
it can; the trial run holds their means, Optuna their aggregate, the report their CIs."""

from __future__ import annotations

import math
import re
import signal
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from droplab import metrics, tags
from droplab.compare.stats import mean_ci, reduction_ci
from droplab.config.paths import study_storage
from droplab.data.splits import prepare
from droplab.fit.stack.members import fit_members
from droplab.fit.trainer import TrialStopped, fit
from droplab.render.page import fmt, percent
from droplab.study import run as study_run
from droplab.study import seed_report, space
from droplab.study.report import write_report
from droplab.study.trial import WorkerSpec, run_closer, run_trial
from droplab.study.trials import trials_frame
from droplab.tracking.connect import make_tracker

from .conftest import tiny_config
from .study_helpers import by_kind, load, mlflow_runs, states, study_config, trial_runs

SEEDS = "study.seeds=[0, 1, 2]"


def test_seed_mean_and_sem_on_hand_checked_numbers() -> None:
    mean, sem = metrics.seed_mean([1.0, 2.0, 4.0])
    # mean 7/3; sample variance ((4/3)^2 + (1/3)^2 + (5/3)^2) / 2 = 7/3; sem = sqrt(7/3 / 3)
    assert mean == pytest.approx(7 / 3) and sem == pytest.approx(math.sqrt(7 / 9))
    # lcb is one standard error toward worse: down for a maximised objective, up for a minimised
    assert metrics.seed_aggregate([1.0, 2.0, 4.0], metrics.MAXIMIZE, "lcb") == pytest.approx(
        7 / 3 - math.sqrt(7 / 9)
    )
    assert metrics.seed_aggregate([1.0, 2.0, 4.0], metrics.MINIMIZE, "lcb") == pytest.approx(
        7 / 3 + math.sqrt(7 / 9)
    )
    # one seed has no standard error: its lcb is its value
    assert metrics.seed_aggregate([0.5], metrics.MAXIMIZE, "lcb") == 0.5
    # the _sem name sits beside the mean's
    assert metrics.sem_name(metrics.BEST_VAL_AUPRC) == "best/val_auprc_sem"


def test_without_seeds_the_fingerprint_is_unchanged(tmp_path: Path) -> None:
    cfg = study_config(tmp_path)
    # a study made before study.seeds existed resumes: its stored fingerprint still matches
    assert set(__import__("json").loads(space.fingerprint(cfg))) == {"space", "objectives"}
    # with seeds, changing them changes the fingerprint (resuming with other seeds is refused)
    a, b = study_config(tmp_path, SEEDS), study_config(tmp_path, "study.seeds=[0, 1]")
    assert space.fingerprint(a) != space.fingerprint(b)


def test_group_hook_stops_every_member_and_members_still_equal_fit(tmp_path: Path) -> None:
    base = tiny_config(tmp_path, "train.epochs=4", "tracking.enabled=false")
    cfgs = [base.model_copy(update={"seed": s}) for s in (0, 1, 2)]
    seen: list[tuple[int, int]] = []

    def stop_at_2(epoch: int, records: Mapping[int, Mapping[str, float]]) -> None:
        seen.append((epoch, len(records)))
        if epoch == 2:
            raise TrialStopped("pruned at epoch 2")

    results = fit_members(cfgs, group_hook=stop_at_2)
    # the group hook hears each epoch once, with every living member's record
    assert seen == [(1, 3), (2, 3)]
    # what it raises stops ALL members at that epoch, each with that error
    assert all(isinstance(r.error, TrialStopped) and len(r.history) == 2 for r in results)
    # the epochs they trained equal each member's own fit, bit for bit
    alone = fit(
        cfgs[1].model_copy(update={"train": cfgs[1].train.model_copy(update={"epochs": 2})})
    )
    assert results[1].history == alone.history


@pytest.mark.slow
def test_three_trials_three_seeds_runs_means_and_values(tmp_path: Path) -> None:
    cfg = study_config(tmp_path, "study.n_trials=3", SEEDS)
    study_run.run(cfg)
    study = load(cfg)
    client, runs = mlflow_runs(cfg)
    trials = trial_runs(cfg)
    seed_runs = by_kind(runs, tags.KIND_SEED)
    # every trial run has exactly one child run per seed, FINISHED, with its seed param
    for number, trial_run in trials.items():
        children = [r for r in seed_runs if r.data.tags[tags.PARENT] == trial_run.info.run_id]
        assert sorted(r.data.params["seed"] for r in children) == ["0", "1", "2"]
        assert all(r.info.status == "FINISHED" for r in children)
        # the seeds trained in lockstep, and the runs say so
        assert {r.data.tags[tags.VECTORIZED] for r in [trial_run, *children]} == {"true"}
        assert trial_run.data.tags[tags.STACK_SIZE] == "3"
        # the trial run's summary is the seed mean, with the standard error beside it
        for key in metrics.SUMMARY_KEYS:
            values = [r.data.metrics[key] for r in children]
            mean, sem = np.mean(values), np.std(values, ddof=1) / math.sqrt(3)
            assert trial_run.data.metrics[key] == pytest.approx(mean, rel=1e-9)
            assert trial_run.data.metrics[metrics.sem_name(key)] == pytest.approx(sem, rel=1e-9)
        # the trial run's per-epoch curve is the across-seed mean, one point per epoch
        trial_curve = client.get_metric_history(trial_run.info.run_id, metrics.VAL_LOSS)
        seed_curves = [
            client.get_metric_history(r.info.run_id, metrics.VAL_LOSS) for r in children
        ]
        assert [m.step for m in trial_curve] == [1, 2, 3]
        for i, point in enumerate(trial_curve):
            assert point.value == pytest.approx(np.mean([c[i].value for c in seed_curves]))
        trial = study.trials[number]
        per_seed = trial.user_attrs[tags.SEED_VALUES]
        # the Optuna value is the mean of the per-seed objective values it stored
        assert trial.value == pytest.approx(np.mean([v[0] for v in per_seed.values()]))
        # which equal the seed runs' own objective
        by_seed = {r.data.params["seed"]: r.data.metrics[metrics.BEST_VAL_AUPRC] for r in children}
        assert {s: v[0] for s, v in per_seed.items()} == pytest.approx(by_seed)
    parent = by_kind(runs, tags.KIND_STUDY)[0]
    best = study.best_trial
    ci = mean_ci([v[0] for v in best.user_attrs[tags.SEED_VALUES].values()])
    mean_key, low_key, high_key = metrics.study_best_ci(metrics.BEST_VAL_AUPRC)
    # the parent run carries the best configuration's mean over seeds and its 95% CI
    assert parent.data.metrics[mean_key] == pytest.approx(ci.estimate)
    assert parent.data.metrics[low_key] == pytest.approx(ci.low)
    assert parent.data.metrics[high_key] == pytest.approx(ci.high)


@pytest.mark.slow
def test_lcb_values_on_two_objectives(tmp_path: Path) -> None:
    objectives = "study.objectives=[best/val_auprc, best/gap_loss]"
    cfg = study_config(tmp_path, "study.n_trials=2", SEEDS, "study.aggregate=lcb", objectives)
    study_run.run(cfg)
    done = load(cfg).get_trials(states=(TrialState.COMPLETE,))
    # both trials completed
    assert len(done) == 2
    for trial in done:
        per_seed = list(trial.user_attrs[tags.SEED_VALUES].values())
        auprc, gap = [v[0] for v in per_seed], [v[1] for v in per_seed]
        sem = [np.std(x, ddof=1) / math.sqrt(3) for x in (auprc, gap)]
        # a maximised objective's lcb is mean - sem; a minimised one's is mean + sem
        assert trial.values == pytest.approx([np.mean(auprc) - sem[0], np.mean(gap) + sem[1]])


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra", [(), ("train.precision=bf16-mixed",)], ids=["stacked", "lockstep-bf16"]
)
def test_pruning_sees_the_mean_and_kills_every_seed_run(
    tmp_path: Path, extra: tuple[str, ...]
) -> None:
    # bfloat16 seeds cannot stack: they train in lockstep, one epoch each in turn
    cfg = study_config(tmp_path, SEEDS, "study.pruner=median", "train.epochs=4", *extra)
    tracker = make_tracker(cfg)
    # a pruner that always prunes after epoch 2: val AUPRC is never below -1
    study = optuna.create_study(
        storage=study_storage(cfg),
        direction="maximize",
        pruner=optuna.pruners.ThresholdPruner(lower=-1.0, upper=-0.5, n_warmup_steps=2),
    )
    worker = WorkerSpec(cfg, study_storage(cfg), None, 1)
    trial = study.ask()
    state = run_trial(worker, study, trial, tracker, prepare(cfg.data, cfg.seed))
    frozen = study.trials[0]
    # the trial is pruned at epoch 2, after the mean was reported for epochs 1 and 2
    assert state == TrialState.PRUNED and sorted(frozen.intermediate_values) == [1, 2]
    client, runs = mlflow_runs(cfg)
    seed_runs = by_kind(runs, tags.KIND_SEED)
    # every seed run is KILLED with its 2 epochs, and so is the trial run
    assert sorted(r.info.status for r in seed_runs) == ["KILLED"] * 3
    trial_run = by_kind(runs, tags.KIND_TRIAL)[0]
    assert trial_run.info.status == "KILLED"
    assert trial_run.data.tags[tags.VECTORIZED] == ("false" if extra else "true")
    curves = [client.get_metric_history(r.info.run_id, metrics.VAL_AUPRC) for r in seed_runs]
    for epoch in (1, 2):
        best = [max(m.value for m in c if m.step <= epoch) for c in curves]
        # what the pruner heard is the across-seed mean of each seed's best val AUPRC so far
        assert frozen.intermediate_values[epoch] == pytest.approx(np.mean(best))


@pytest.mark.slow
def test_one_failing_seed_fails_the_trial_with_its_reason(tmp_path: Path) -> None:
    cfg = study_config(tmp_path, SEEDS, "study.baselines=false")

    def explode(epoch: int, _: Mapping[str, float]) -> None:
        if epoch == 2:
            raise RuntimeError("seed one blew up")

    study = study_run.open_study(cfg, study_storage(cfg))
    worker = WorkerSpec(cfg, study_storage(cfg), None, 1, seed_hooks={1: [explode]})
    state = run_trial(worker, study, study.ask(), make_tracker(cfg), prepare(cfg.data, cfg.seed))
    trial = load(cfg).trials[0]
    # one failing seed fails the trial, and the reason names the seed and its error
    assert state == TrialState.FAIL and trial.state == TrialState.FAIL
    assert "seed 1" in trial.user_attrs[tags.FAIL_REASON]
    assert "seed one blew up" in trial.user_attrs[tags.FAIL_REASON]
    _, runs = mlflow_runs(cfg)
    seed_runs = {r.data.params["seed"]: r for r in by_kind(runs, tags.KIND_SEED)}
    # the failing seed's run is FAILED with its reason; the trial run FAILED too
    assert seed_runs["1"].info.status == "FAILED"
    assert "seed one blew up" in seed_runs["1"].data.tags[tags.REASON]
    assert by_kind(runs, tags.KIND_TRIAL)[0].info.status == "FAILED"
    # no run is left RUNNING (the other seeds were stopped with it)
    assert all(r.info.status != "RUNNING" for r in runs)


def test_recovery_closes_a_dead_trials_seed_runs(tmp_path: Path) -> None:
    cfg = study_config(tmp_path, SEEDS)
    tracker = make_tracker(cfg)
    study = study_run.open_study(cfg, study_storage(cfg))
    trial = study.ask()
    trial_run = tracker.start("trial-000", tags.KIND_TRIAL, {}, None)
    seed_run = tracker.start("seed-0", tags.KIND_SEED, {}, trial_run)
    trial.set_user_attr(tags.RUN_ID, trial_run)
    run_closer(tracker)(study.trials[0], "worker died")
    # a dead worker's trial run and the seed runs it left RUNNING are all closed FAILED
    assert {tracker.get_run(r).status for r in (trial_run, seed_run)} == {"FAILED"}


@pytest.mark.slow
def test_kill_9_mid_trial_with_seeds_resumes_to_exactly_n_trials(tmp_path: Path) -> None:
    from .test_study_signals import _start, _wait_running

    proc, _ = _start(tmp_path, SEEDS)
    _wait_running(tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    small = ["study.n_trials=2", "data.rows=1500", "train.epochs=2", "study.baselines=false"]
    cfg = study_config(tmp_path, SEEDS, *small)
    # after kill -9 the trial is left RUNNING in storage
    assert states(load(cfg)) == {"RUNNING": 1}
    study_run.run(cfg)
    study = load(cfg)
    # the next start fails the dead trial and completes exactly n_trials, all seeds each
    assert states(study) == {"FAIL": 1, "COMPLETE": 2}
    assert all(len(t.user_attrs[tags.SEED_VALUES]) == 3 for t in study.trials[1:])
    _, runs = mlflow_runs(cfg)
    # nothing is left RUNNING: neither the killed trial's run nor any seed run
    assert all(r.info.status != "RUNNING" for r in runs)
    # each completed trial has its three seed runs
    assert len(by_kind(runs, tags.KIND_SEED)) == 6


@pytest.mark.slow
def test_report_cis_equal_those_from_the_stored_per_seed_values(tmp_path: Path) -> None:
    cfg = study_config(tmp_path, "study.n_trials=5", SEEDS, "train.epochs=4")
    study_run.run(cfg)
    study = load(cfg)
    frame = trials_frame(study, cfg)
    text = write_report(cfg).markdown.read_text()
    best = study.best_trial
    summaries = best.user_attrs[tags.SEED_SUMMARIES]
    ci = mean_ci([s[metrics.BEST_VAL_AUPRC] for s in summaries.values()])
    # the best configuration is stated with its mean and 95% CI over the stored seed values
    assert f"{fmt(ci.estimate)} (95% CI {fmt(ci.low)} to {fmt(ci.high)})" in text
    # the paired reduction of each dropout trial equals Fieller's CI on the stored values
    paired = seed_report.paired(frame, metrics.BEST_GAP_LOSS)
    for _, row in paired.iterrows():
        trial = study.trials[int(row["number"])]
        controls = [study.trials[n] for n in row["controls"]]
        seeds = sorted(trial.user_attrs[tags.SEED_SUMMARIES])
        gaps = [trial.user_attrs[tags.SEED_SUMMARIES][s][metrics.BEST_GAP_LOSS] for s in seeds]
        base = [
            np.mean(
                [c.user_attrs[tags.SEED_SUMMARIES][s][metrics.BEST_GAP_LOSS] for c in controls]
            )
            for s in seeds
        ]
        expected = reduction_ci(gaps, base)
        got = row[metrics.BEST_GAP_LOSS].reduction
        assert got.estimate == pytest.approx(expected.estimate, nan_ok=True)
        assert (got.low, got.high) == pytest.approx((expected.low, expected.high), nan_ok=True)
        # and that number is the one the report prints
        assert percent(got.estimate) in text
    # the report says its figures are over seeds, with CIs
    assert re.search(r"same 3 seeds", text)


@pytest.mark.slow
def test_single_seed_report_says_it_is_single_seed(tmp_path: Path) -> None:
    cfg = study_config(tmp_path, "study.n_trials=2")
    study_run.run(cfg)
    # without study.seeds the report says its figures are single-seed
    assert "single-seed" in write_report(cfg).markdown.read_text()


@pytest.mark.slow
def test_one_listed_seed_trains_alone_under_its_trial_run(tmp_path: Path) -> None:
    cfg = study_config(tmp_path, "study.n_trials=2", "study.seeds=[5]")
    study_run.run(cfg)
    _, runs = mlflow_runs(cfg)
    seed_runs = by_kind(runs, tags.KIND_SEED)
    # each trial run has its one seed run, trained by fit alone (not stacked), on seed 5
    assert len(seed_runs) == 2 and {r.data.params["seed"] for r in seed_runs} == {"5"}
    assert {r.data.tags[tags.VECTORIZED] for r in by_kind(runs, tags.KIND_TRIAL)} == {"false"}
    for trial in load(cfg).get_trials(states=(TrialState.COMPLETE,)):
        # the trial's value is its one seed's value
        assert trial.value == trial.user_attrs[tags.SEED_VALUES]["5"][0]


@pytest.mark.slow
def test_two_workers_on_a_journal_run_exactly_n_trials_with_their_seeds(tmp_path: Path) -> None:
    cfg = study_config(tmp_path, "study.n_trials=4", "study.workers=2", "study.seeds=[0, 1]")
    study_run.run(cfg)
    study = load(cfg)
    # two processes on the default journal storage finish exactly n_trials, none failed
    assert states(study) == {"COMPLETE": 4}
    _, runs = mlflow_runs(cfg)
    # each trial run has its two seed runs, and nothing is left RUNNING
    assert len(by_kind(runs, tags.KIND_TRIAL)) == 4 and len(by_kind(runs, tags.KIND_SEED)) == 8
    assert all(r.info.status == "FINISHED" for r in runs)
