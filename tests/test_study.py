"""`droplab study`: search space, storages, resume, failures, pruning, workers, MLflow tree."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
from optuna.trial import FixedTrial, TrialState

from droplab import metrics, tags
from droplab.cli.main import main
from droplab.config import ConfigError, load_config, study_storage, to_dict
from droplab.study import space
from droplab.study.close import StudyFailed
from droplab.study.run import open_study, run

from .study_helpers import (
    POSTGRES,
    by_kind,
    load,
    mlflow_runs,
    states,
    study_config,
    trial_runs,
    unique_name,
)


def test_suggest_is_a_pure_function_of_trial_and_space() -> None:
    cfg = load_config()
    trial = FixedTrial({"model.dropout": 0.25, "model.width": 128})
    # suggested values come back as dotted config overrides
    assert space.suggest(trial, cfg.study.space) == {"model.dropout": 0.25, "model.width": 128}
    fixed = load_config(
        None,
        [
            "study.space={train.lr: {type: fixed, value: 0.01},"
            " model.activation: {type: categorical, choices: [relu, gelu]}}"
        ],
    ).study.space
    # fixed values pass through; categorical ones are drawn from the trial
    out = space.suggest(FixedTrial({"model.activation": "gelu"}), fixed)
    assert out == {"train.lr": 0.01, "model.activation": "gelu"}


def test_default_space_and_baselines() -> None:
    cfg = load_config()
    # the default experiment searches dropout in [0, 0.8] and width in [16, 1024] (log)
    assert cfg.study.space["model.dropout"].high == 0.8
    assert to_dict(cfg)["study"]["space"]["model.width"] == {
        "type": "int",
        "low": 16,
        "high": 1024,
        "log": True,
        "role": "scientific",
    }
    # dropout-0 controls at the low, geometric middle and high widths
    widths = [p["model.width"] for p in space.baseline_params(cfg)]
    assert widths == [16, 128, 1024]
    assert all(p["model.dropout"] == 0.0 for p in space.baseline_params(cfg))


def test_four_trial_study_builds_the_mlflow_tree(tmp_path: Path) -> None:
    cfg = study_config(tmp_path, "study.n_trials=4")
    outcome = run(cfg)
    study = load(cfg)
    # exactly four finished trials, the first three are the dropout-0 controls
    assert states(study) == {"COMPLETE": 4}
    assert [t.params["model.dropout"] for t in study.trials[:3]] == [0.0, 0.0, 0.0]
    _, runs = mlflow_runs(cfg)
    parents, children = by_kind(runs, "study"), by_kind(runs, "trial")
    # one parent run, four children pointing at it
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert all(c.data.tags[tags.PARENT] == parent.info.run_id for c in children)
    # every child carries the gap metrics, its trial number and state
    for child in children:
        assert (
            metrics.GAP_LOSS in child.data.metrics and metrics.BEST_GAP_LOSS in child.data.metrics
        )
        assert child.data.tags[tags.STATE] == tags.COMPLETE
    # each trial knows its MLflow run
    assert {t.user_attrs["droplab.run_id"] for t in study.trials} == {
        c.info.run_id for c in children
    }
    # the parent holds the study summary and is closed
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics[metrics.study_count("COMPLETE")] == 4
    assert parent.data.metrics[metrics.study_best(metrics.BEST_VAL_AUPRC)] == pytest.approx(
        study.best_value
    )
    assert outcome.started == 4
    # the activations picture is drawn once, for the best trial, not for every trial
    client, _ = mlflow_runs(cfg)
    best_run = study.best_trial.user_attrs["droplab.run_id"]
    pictures = {
        c.info.run_id
        for c in children
        if "activations.png" in {a.path for a in client.list_artifacts(c.info.run_id)}
    }
    assert pictures == {best_run}


def test_resume_runs_nothing_and_extension_adds_the_difference(tmp_path: Path) -> None:
    cfg = study_config(tmp_path, "study.n_trials=3")
    run(cfg)
    again = run(cfg)
    # the same command twice runs nothing new
    assert again.started == 0 and len(load(cfg).trials) == 3
    more = run(study_config(tmp_path, "study.n_trials=5"))
    # a larger n_trials continues where it stopped
    assert more.started == 2 and states(load(cfg)) == {"COMPLETE": 5}
    _, runs = mlflow_runs(cfg)
    # still one parent, now five trial runs under it
    assert len(by_kind(runs, "study")) == 1 and len(by_kind(runs, "trial")) == 5


def test_changed_search_space_is_refused(tmp_path: Path) -> None:
    run(study_config(tmp_path, "study.n_trials=1", "study.baselines=false"))
    changed = study_config(
        tmp_path,
        "study.n_trials=2",
        "study.space={model.dropout: {type: float, low: 0.0, high: 0.5}}",
    )
    # the same study name with another space is a config error, not a mixed study
    with pytest.raises(ConfigError, match="another search space"):
        run(changed)


def test_nan_trial_fails_with_reason_and_study_goes_on(tmp_path: Path) -> None:
    lr_space = "study.space={train.lr: {type: float, low: 1e-4, high: 1e13, log: true}}"
    cfg = study_config(tmp_path, lr_space, "study.n_trials=2", "train.optimizer=sgd")
    study = open_study(cfg, study_storage(cfg))
    study.enqueue_trial({"train.lr": 1e12})
    study.enqueue_trial({"train.lr": 0.05})
    outcome = run(cfg)
    trials = load(cfg).trials
    # the exploding trial is FAIL with its reason; the next one still ran and completed
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert "NonFiniteLoss" in trials[0].user_attrs["droplab.fail_reason"]
    # its MLflow run is FAILED with the same reason
    failed_run = trial_runs(cfg)[0]
    assert failed_run.info.status == "FAILED"
    assert "NonFiniteLoss" in failed_run.data.tags[tags.REASON]
    assert len(outcome.failed_now) == 1


def test_all_trials_failing_is_an_error(tmp_path: Path) -> None:
    cfg = study_config(
        tmp_path,
        "study.n_trials=2",
        "train.optimizer=sgd",
        "train.lr=1e12",
        "study.baselines=false",
    )
    # when every trial fails the study says so and exits non-zero
    with pytest.raises(StudyFailed, match="all 2 trials failed"):
        run(cfg)
    _, runs = mlflow_runs(cfg)
    # and the parent run is closed FAILED, not left RUNNING
    assert by_kind(runs, "study")[0].info.status == "FAILED"


def test_pruned_trial_is_a_killed_run(tmp_path: Path) -> None:
    lr_space = "study.space={train.lr: {type: float, low: 1e-8, high: 0.1, log: true}}"
    cfg = study_config(
        tmp_path,
        lr_space,
        "study.n_trials=2",
        "study.pruner=median",
        "study.startup_trials=1",
        "study.warmup_epochs=0",
        "train.epochs=4",
    )
    study = open_study(cfg, study_storage(cfg))
    study.enqueue_trial({"train.lr": 0.05})
    study.enqueue_trial({"train.lr": 1e-8})  # learns nothing: worse than the median at epoch 1
    run(cfg)
    trials = load(cfg).trials
    # the hopeless trial is pruned after reporting once per epoch
    assert trials[1].state == TrialState.PRUNED
    assert 1 <= len(trials[1].intermediate_values) < 4
    pruned_run = trial_runs(cfg)[1]
    # pruned -> MLflow run KILLED, state tag PRUNED, its epochs so far kept
    assert pruned_run.info.status == "KILLED"
    assert pruned_run.data.tags[tags.STATE] == tags.PRUNED
    assert metrics.BEST_VAL_AUPRC in pruned_run.data.metrics


def test_multi_objective_study_has_a_pareto_front(tmp_path: Path) -> None:
    cfg = study_config(
        tmp_path,
        "study.n_trials=5",
        "study.sampler=nsga2",
        "study.objectives=[best/val_auprc, best/gap_loss]",
    )
    run(cfg)
    study = load(cfg)
    # two objectives: maximise val AUPRC, minimise the gap
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    # the Pareto front is non-empty and every member is non-dominated
    front = study.best_trials
    assert front
    for a in front:
        assert not any(
            b.values[0] >= a.values[0] and b.values[1] <= a.values[1] and b.values != a.values
            for b in study.trials
            if b.values
        )


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["random", "qmc", "gp", "cmaes", "tpe"])
def test_samplers_are_seeded(tmp_path: Path, sampler: str) -> None:
    params = []
    for attempt in range(2):
        cfg = study_config(
            tmp_path / str(attempt),
            "study.n_trials=4",
            f"study.sampler={sampler}",
            "study.baselines=false",
            "train.epochs=1",
            "data.rows=600",
            "tracking.enabled=false",
        )
        run(cfg)
        params.append([t.params for t in load(cfg).trials])
    # the same sampler seed proposes the same trials
    assert params[0] == params[1]


def test_sqlite_with_several_workers_is_refused(tmp_path: Path) -> None:
    cfg = study_config(tmp_path, "study.workers=2", f"study.storage=sqlite:///{tmp_path}/o.db")
    # several processes on one SQLite file are refused with the alternatives named
    with pytest.raises(ConfigError, match="journal"):
        run(cfg)
    # and nothing was created
    assert not (tmp_path / "o.db").exists() and not (tmp_path / "runs").exists()


def test_unreachable_storage_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = "postgresql://nobody:secret@127.0.0.1:1/none"
    exp = tmp_path / "exp.yaml"
    exp.write_text("name: unreachable\n")
    code = main(["study", str(exp), f"paths.runs={tmp_path}/runs", f"study.storage={bad}"])
    err = capsys.readouterr().err
    # exit 2 with one line naming the storage; the password never appears
    assert code == 2 and "study.storage=" in err and "unreachable" in err
    assert "secret" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_two_workers_on_a_journal_file(tmp_path: Path) -> None:
    # trials of a second or so: tiny ones can all be done before the second worker has
    # imported torch, which is not what this test is about
    cfg = study_config(
        tmp_path, "study.n_trials=6", "study.workers=2", "data.rows=20000", "train.epochs=6"
    )
    run(cfg)
    study = load(cfg)
    # exactly six finished trials, none failed, numbers unique
    assert states(study) == {"COMPLETE": 6}
    assert sorted(t.number for t in study.trials) == list(range(6))
    # at most two processes ran them, this one among them (it is a worker too; the spawned
    # one joins once it has imported torch, which on a busy machine can be after the last)
    pids = {t.user_attrs["droplab.pid"] for t in study.trials}
    assert len(pids) <= 2 and os.getpid() in pids
    # no two trials were proposed the same point
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 6
    # six trial runs under one parent
    _, runs = mlflow_runs(cfg)
    assert len(by_kind(runs, "trial")) == 6 and len(by_kind(runs, "study")) == 1


@pytest.mark.slow
def test_study_on_postgresql(tmp_path: Path) -> None:
    name = unique_name()
    cfg = study_config(
        tmp_path, f"study.storage={POSTGRES}", f"study.name={name}", "study.n_trials=3"
    )
    run(cfg)
    study = optuna.load_study(study_name=name, storage=POSTGRES)
    # the study lives on the real PostgreSQL server with its trials and parent run id
    assert states(study) == {"COMPLETE": 3}
    assert study.user_attrs["droplab.parent_run_id"]
    resumed = run(
        study_config(
            tmp_path, f"study.storage={POSTGRES}", f"study.name={name}", "study.n_trials=4"
        )
    )
    # and resumes there like anywhere else
    assert resumed.started == 1
    optuna.delete_study(study_name=name, storage=POSTGRES)


def test_network_filesystem_is_detected_from_mounts() -> None:
    from droplab.study.storage import filesystem_type

    mounts = "/dev/vda / ext4 rw 0 0\nserver:/export /mnt/shared nfs4 rw 0 0\n"
    # the longest mount point holding the path decides its filesystem
    assert filesystem_type(Path("/mnt/shared/runs"), mounts) == "nfs4"
    assert filesystem_type(Path("/home/x/runs"), mounts) == "ext4"
