"""Where users already look: the study's note and figures on optuna-dashboard, the MLflow
experiment's kind, the best model as a LoggedModel, the parent run's description, and plain
progress lines when the output is a log file and not a terminal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna_dashboard import get_note

from droplab import metrics, progress, tags
from droplab.config import Config
from droplab.optuna_compat import storage_of
from droplab.study import dashboard
from droplab.study.report import write_report
from droplab.study.run import run

from .conftest import REPO, TINY
from .study_helpers import SMALL_SPACE, load, mlflow_runs, study_config

PLOT_DATA = "dashboard:plot_data:"  # optuna-dashboard's study system attribute prefix


def figures(study: optuna.Study) -> dict[str, dict[str, object]]:
    """The custom figures as optuna-dashboard stores them: a plotly JSON split in chunks."""
    storage = storage_of(study)
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(study.study_name))
    out = {}
    for graph_id in (dashboard.CURVES_ID, dashboard.GAP_ID):
        prefix = f"{PLOT_DATA}{graph_id}:"
        chunks = sorted(
            (int(k[len(prefix) :]), v) for k, v in attrs.items() if k.startswith(prefix)
        )
        if chunks:
            out[graph_id] = json.loads("".join(v for _, v in chunks))
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """Six trials, two of them dropout-0 controls, in real SQLite stores."""
    tmp = tmp_path_factory.mktemp("review")
    cfg = study_config(tmp, "study.n_trials=6", "study.baseline_widths=[8, 64]")
    run(cfg)
    return cfg


@pytest.mark.slow
def test_dashboard_note_and_figures_hold_the_findings(finished: Config) -> None:
    study = load(finished)
    note = get_note(study)
    # the note is the report's findings: best configuration, gap reduction, where the report is
    assert "## Best configuration" in note and "## Gap reduction against dropout 0" in note
    assert "report.html" in note and "## Plots" not in note
    drawn = figures(study)
    # both custom figures are stored where the dashboard reads them
    assert set(drawn) == {dashboard.CURVES_ID, dashboard.GAP_ID}
    names = {t["name"] for t in drawn[dashboard.CURVES_ID]["data"]}  # type: ignore[union-attr]
    done = sorted(
        (t for t in study.trials if t.values),
        key=lambda t: -t.values[0],
    )
    # the curves show the best trial and a dropout-0 control outside the best three
    controls = [t for t in done[3:] if t.params["model.dropout"] == 0.0]
    for trial in [done[0], *controls[:1]]:
        assert any(n.startswith(f"trial-{trial.number:03d}") and n.endswith(" gap") for n in names)
    # objectives carry their names (optuna-dashboard reads the study's metric names)
    assert study.metric_names == [metrics.BEST_VAL_AUPRC]


@pytest.mark.slow
def test_report_refreshes_the_note(finished: Config) -> None:
    study = load(finished)
    dashboard.publish(study, "stale", {})
    write_report(finished)
    # `droplab report` replaces the note with the findings again
    assert "## Best configuration" in get_note(load(finished))


@pytest.mark.slow
def test_mlflow_shows_the_findings_and_the_best_model(finished: Config) -> None:
    client, runs = mlflow_runs(finished)
    experiment = client.get_experiment_by_name(finished.name)
    assert experiment is not None
    # the UI opens the experiment on its training runs
    assert experiment.tags[tags.EXPERIMENT_KIND] == tags.MODEL_DEVELOPMENT
    parent = next(r for r in runs if r.data.tags[tags.KIND] == tags.KIND_STUDY)
    # the parent's description (its run page) is the findings table
    description = parent.data.tags[tags.RUN_NOTE]
    assert "## Best configuration" in description and "| " in description
    best = load(finished).best_trial
    # (the client's search_logged_models: mlflow.set_tracking_uri would leak into later tests)
    models = client.search_logged_models(experiment_ids=[experiment.experiment_id])
    # one LoggedModel, from the best trial's run, with its params and summary metrics
    assert len(models) == 1
    model = models[0]
    assert model.source_run_id == best.user_attrs[tags.RUN_ID]
    assert float(model.params["model.dropout"]) == pytest.approx(best.params["model.dropout"])
    linked = {m.key: m.value for m in model.metrics or []}
    assert linked[metrics.BEST_VAL_AUPRC] == pytest.approx(best.value)
    assert metrics.FINAL_GAP_LOSS in linked
    # the parent lists it among its models too, and the trial run stayed FINISHED
    outputs = client.get_run(parent.info.run_id).outputs
    assert outputs is not None
    assert [o.model_id for o in outputs.model_outputs] == [model.model_id]
    assert client.get_run(model.source_run_id).info.status == "FINISHED"


def test_fit_note_cuts_at_a_line() -> None:
    note = "\n".join(f"| row {i} | {i} |" for i in range(1000))
    cut = dashboard.fit_note(note, 500)
    # within the limit, whole lines only, and it says it was cut
    assert len(cut) <= 500 and "| row 1 | 1 |\n" in cut and "cut here" in cut
    assert dashboard.fit_note("short") == "short"


def test_result_line_is_plain(capsys: pytest.CaptureFixture[str]) -> None:
    summary = {metrics.BEST_VAL_AUPRC: 0.65, metrics.FINAL_GAP_LOSS: 0.04, "other": 1.0}
    line = progress.result_line("trial 3", "COMPLETE", {"model.dropout": 0.3125}, summary)
    # number, state, params and the key numbers, nothing else
    assert (
        line == "trial 3 COMPLETE model.dropout=0.3125 best/val_auprc=0.6500 final/gap_loss=0.0400"
    )
    progress.log_line("a\rb\x1b[31mc\nd")  # pytest's capture is not a terminal
    # control characters never reach a log
    assert capsys.readouterr().err == "a bc d\n"


def _droplab(command: str, exp: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``droplab COMMAND EXP args`` with stdout and stderr to pipes: not a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "droplab.cli", command, str(REPO / exp), *TINY, *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_logs_have_one_plain_line_per_trial(tmp_path: Path) -> None:
    done = _droplab(
        "study",
        "experiments/fraud_dropout_width.yaml",
        f"paths.runs={tmp_path / 'runs'}",
        "study.n_trials=3",
        "study.baseline_widths=[8]",
        "study.pruner=none",
        SMALL_SPACE,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    # no carriage returns or escape codes: a log file reads the same in any viewer
    assert "\r" not in out and "\x1b" not in out
    lines = [line for line in done.stderr.splitlines() if line.startswith("trial ")]
    # one line per trial: number, state, params and the key numbers
    assert [line.split()[:3] for line in lines] == [
        ["trial", str(n), "COMPLETE"] for n in range(3)
    ]
    assert all("model.dropout=" in line and "final/gap_loss=" in line for line in lines)


@pytest.mark.slow
def test_compare_logs_one_plain_line_per_seed_run(tmp_path: Path) -> None:
    done = _droplab(
        "compare",
        "experiments/dropout_vs_baseline.yaml",
        f"paths.runs={tmp_path / 'runs'}",
        "compare.grid={model.dropout: [0.0, 0.5], model.width: [16]}",
        "compare.seeds=[0, 1]",
        "train.epochs=2",
        "data.rows=800",
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    # no carriage returns or escape codes
    assert "\r" not in out and "\x1b" not in out
    lines = [line for line in done.stderr.splitlines() if " seed-" in line]
    # one line per (cell, seed), with its state and the key numbers
    assert len(lines) == 4 and all(
        "COMPLETE" in line and "best/val_auprc=" in line for line in lines
    )
