"""`droplab report`: the trials table, gap reduction against dropout-0 controls, the test
split, and the files written and logged, from a real Optuna study and real MLflow runs."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from droplab import metrics, tags
from droplab.config import (
    Config,
    ConfigError,
    artifact_root,
    experiment_name,
    runs_dir,
    study_name,
    study_storage,
    tracking_uri,
    with_overrides,
)
from droplab.data.splits import prepare
from droplab.fit.scoring import score
from droplab.fit.trainer import build_model
from droplab.study.plots import (
    band_order,
    dropout_band,
    gap_by_width_band,
    gap_heatmap,
    width_band,
)
from droplab.study.report import ReportPaths, evaluate_best_on_test, gap_reduction, write_report
from droplab.study.trials import trials_frame
from droplab.tags import (
    BASELINE,
    FAIL_REASON,
    MODEL,
    MODEL_FILE,
    OBJECTIVES,
    PARENT_RUN,
    RUN_ID,
    SUMMARY,
)
from droplab.tracking.connect import read_store
from droplab.tracking.store import MlflowTracker, Tracker

from .conftest import tiny_config

COMPLETE, PRUNED, FAIL = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL
DISTRIBUTIONS = {
    "model.dropout": FloatDistribution(0.0, 0.8),
    "model.width": IntDistribution(8, 512, log=True),
}
# (dropout, width, best/gap_loss, best/val_auprc, state): controls at widths 8, 32 and 128.
TRIALS = [
    (0.0, 8, 0.10, 0.60, COMPLETE),
    (0.0, 32, 0.20, 0.66, COMPLETE),
    (0.0, 128, 0.40, 0.70, COMPLETE),
    (0.2, 8, 0.05, 0.62, COMPLETE),  # control: trial 0
    (0.5, 12, 0.02, 0.58, COMPLETE),  # 0.58 octaves from 8: trial 0
    (0.4, 30, 0.08, 0.69, COMPLETE),  # trial 1
    (0.6, 120, 0.10, 0.80, COMPLETE),  # trial 2; the best by val AUPRC
    (0.3, 64, 0.27, 0.71, COMPLETE),  # one octave from 32 and 128: both, averaged
    (0.7, 300, 0.05, 0.55, COMPLETE),  # 1.23 octaves from 128: no control
    (0.5, 16, 0.09, 0.50, PRUNED),  # pruned with a summary: one octave from 8 and 32
    (0.8, 256, math.nan, math.nan, FAIL),
]
BEST = 6
FINAL_EXTRA = 0.01  # final/gap_loss = best/gap_loss + 0.01 in every summary
# The MLflow store's schema migrations alone take ~6 s; the studies are built once per module.
slow = pytest.mark.slow
PNG = b"\x89PNG\r\n\x1a\n"
REASON = f"NonFiniteLoss: {metrics.TRAIN_RUNNING_LOSS} became nan at epoch 2"


@dataclass
class Built:
    cfg: Config
    study: optuna.Study
    parent: str


def _summary(gap: float, auprc: float) -> dict[str, float]:
    return {
        metrics.BEST_EPOCH: 2.0,
        metrics.BEST_VAL_LOSS: 0.3,
        metrics.BEST_VAL_AUPRC: auprc,
        metrics.BEST_GAP_LOSS: gap,
        metrics.FINAL_GAP_LOSS: gap + FINAL_EXTRA,
        metrics.FINAL_VAL_AUPRC: auprc - 0.01,
    }


def _trial_run(tracker: MlflowTracker, parent: str, number: int, gap: float) -> str:
    run_id = tracker.start(f"trial-{number:03d}", "trial", {}, parent)
    for epoch in (1, 2, 3):
        train = 0.5 / epoch
        values = {metrics.TRAIN_LOSS: train, metrics.VAL_LOSS: train + gap, metrics.GAP_LOSS: gap}
        tracker.log_metrics(run_id, values, step=epoch)
    tracker.end(run_id, tags.FINISHED, tags.COMPLETE)
    return run_id


def _save_model(
    cfg: Config, tracker: MlflowTracker, run_id: str, params: dict[str, float]
) -> None:
    trial_cfg = with_overrides(cfg, params)
    model = build_model(trial_cfg, prepare(trial_cfg.data, trial_cfg.seed))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MODEL_FILE
        torch.save(model.state_dict(), path)
        tracker.log_artifact(run_id, path)


def _build(cfg: Config, tracker: MlflowTracker, directions: list[str], model: bool) -> Built:
    study = optuna.create_study(
        study_name=study_name(cfg), storage=study_storage(cfg), directions=directions
    )
    parent = tracker.start(f"study-{study.study_name}", "study", {}, None)
    study.set_user_attr(PARENT_RUN, parent)
    study.set_user_attr(
        OBJECTIVES, [metrics.BEST_VAL_AUPRC, metrics.BEST_GAP_LOSS][: len(directions)]
    )
    for number, (dropout, width, gap, auprc, state) in enumerate(TRIALS):
        params = {"model.dropout": dropout, "model.width": width}
        attrs = {RUN_ID: _trial_run(tracker, parent, number, gap), BASELINE: dropout == 0.0}
        if state == FAIL:
            attrs[FAIL_REASON] = REASON
        else:
            attrs[SUMMARY] = _summary(gap, auprc)
        if model and number == BEST:
            _save_model(cfg, tracker, attrs[RUN_ID], params)
            attrs[MODEL] = MODEL_FILE
        values = [auprc, gap][: len(directions)] if state == COMPLETE else None
        trial = create_trial(
            params=params,
            distributions=DISTRIBUTIONS,
            values=values,
            user_attrs=attrs,
            state=state,
            intermediate_values={1: auprc} if state == PRUNED else None,
        )
        study.add_trial(trial)
    return Built(cfg, study, parent)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, MlflowTracker]:
    cfg = tiny_config(tmp_path_factory.mktemp("report"), "name=s")
    runs_dir(cfg).mkdir(parents=True)
    return cfg, MlflowTracker(tracking_uri(cfg), experiment_name(cfg), artifact_root(cfg))


@pytest.fixture(scope="module")
def single(store: tuple[Config, MlflowTracker]) -> Built:
    cfg, tracker = store
    return _build(cfg, tracker, ["maximize"], model=True)


@pytest.fixture(scope="module")
def pareto(store: tuple[Config, MlflowTracker]) -> Built:
    cfg = with_overrides(store[0], {"study.name": "s-pareto"})
    return _build(cfg, store[1], ["maximize", "minimize"], model=False)


@pytest.fixture(scope="module")
def written(single: Built) -> ReportPaths:
    return write_report(single.cfg)


def test_bands_and_figures_from_a_hand_built_table(tmp_path: Path) -> None:
    widths = [width_band(w) for w in (16, 64, 65, 256, 300, 2048)]
    dropouts = [dropout_band(p) for p in (0.0, 0.1, 0.2, 0.21, 0.8, 0.9)]
    # width bands name their bounds; the brief's bands are <=64, 65-256, then wider
    assert widths == ["≤64", "≤64", "65–256", "65–256", "257–1024", ">1024"]
    # dropout 0 is a band of its own (the controls); the others are half-open (low, high]
    assert dropouts == ["0", "0–0.2", "0–0.2", "0.2–0.4", "0.4–0.8", ">0.8"]
    # bands read narrow to wide, controls first, whatever order they come in
    assert band_order([">1024", "0.2–0.4", "≤64", "0", "65–256"])[:3] == [
        "≤64",
        "65–256",
        ">1024",
    ]
    frame = pd.DataFrame(
        {
            "width": [8, 8, 16, 300],
            "dropout": [0.0, 0.0, 0.1, 0.55],
            metrics.BEST_GAP_LOSS: [0.1, 0.3, -0.05, 0.02],
            metrics.FINAL_GAP_LOSS: [0.2, 0.4, 0.01, 0.03],
        }
    )
    for draw in (gap_heatmap, gap_by_width_band):
        # final gaps of complete trials in one panel, best-epoch gaps of all in the other
        out = draw(frame.iloc[:3], frame, tmp_path / f"{draw.__name__}.png")
        # each figure is a real PNG with something drawn in it
        assert out.read_bytes()[:8] == PNG and out.stat().st_size > 2000


@slow
def test_trials_frame_has_one_row_per_trial(single: Built) -> None:
    frame = trials_frame(single.study)
    # every trial appears once, in trial-number order
    assert list(frame["number"]) == list(range(len(TRIALS)))
    # with its state, failed and pruned ones included
    assert list(frame["state"]) == [t[4].name for t in TRIALS]
    # width comes from the trial's params
    assert list(frame["width"]) == [t[1] for t in TRIALS]
    # the controls (baselines) are the dropout-0 trials
    assert list(frame["baseline"]) == [t[0] == 0.0 for t in TRIALS]
    # summary metrics come from the trial's droplab.summary as stored
    assert frame.loc[BEST, metrics.BEST_GAP_LOSS] == 0.10
    # every trial names its MLflow run
    assert frame["run_id"].notna().all()


@slow
def test_gap_reduction_against_the_nearest_dropout_zero_width(single: Built) -> None:
    table = gap_reduction(trials_frame(single.study)).set_index("number")
    gap = {n: t[2] for n, t in enumerate(TRIALS)}
    auprc = {n: t[3] for n, t in enumerate(TRIALS)}
    expected = {
        3: 1 - gap[3] / gap[0],
        4: 1 - gap[4] / gap[0],
        5: 1 - gap[5] / gap[1],
        6: 1 - gap[6] / gap[2],
        7: 1 - gap[7] / ((gap[1] + gap[2]) / 2),
        9: 1 - gap[9] / ((gap[0] + gap[1]) / 2),
    }
    # every dropout trial with a summary (pruned included, failed not) gets a row
    assert sorted(table.index) == [3, 4, 5, 6, 7, 8, 9]
    # reduction = 1 - gap / gap of the dropout-0 control(s) at the nearest width
    assert table.loc[list(expected), "reduction"].tolist() == pytest.approx(
        list(expected.values())
    )
    # a control more than one octave away is no control
    assert math.isnan(table.loc[8, "reduction"]) and table.loc[8, "control_trials"] == ""
    # the cost sits beside the benefit: the change in val AUPRC against the same control
    assert table.loc[6, "delta_val_auprc"] == pytest.approx(auprc[6] - auprc[2])
    # controls equally near (one octave either side) are averaged, and named
    assert table.loc[7, "control_trials"] == "1, 2"


@slow
def test_final_gap_reduction_compares_complete_trials_only(single: Built) -> None:
    frame = trials_frame(single.study)
    table = gap_reduction(frame, metrics.FINAL_GAP_LOSS).set_index("number")
    final = {n: t[2] + FINAL_EXTRA for n, t in enumerate(TRIALS)}
    # the pruned trial (9) stopped early: its last epoch is not the budget's, so it is left out
    assert sorted(table.index) == [3, 4, 5, 6, 7, 8]
    # reduction of the final gap against the final gap of the same controls
    assert table.loc[6, "reduction"] == pytest.approx(1 - final[6] / final[2])
    assert table.loc[7, "reduction"] == pytest.approx(1 - final[7] / ((final[1] + final[2]) / 2))


@slow
def test_write_report_answers_in_numbers(single: Built, written: ReportPaths) -> None:
    paths = written
    md = paths.markdown.read_text(encoding="utf-8")
    best = optuna.load_study(study_name="s", storage=study_storage(single.cfg)).best_trial
    # the report lands in <paths.runs>/reports/<study>/
    assert paths.directory == runs_dir(single.cfg) / "reports" / "s"
    # as Markdown and HTML
    assert paths.html.is_file() and paths.markdown.is_file()
    # the best trial's objective appears as the storage holds it (4 decimals)
    assert f"| {metrics.BEST_VAL_AUPRC} (objective) | {best.value:.4f} |" in md
    # and so do its parameters
    assert f"| model.width | {best.params['model.width']} |" in md
    assert f"| model.dropout | {best.params['model.dropout']:.4f} |" in md  # same rule
    # trials are counted by state
    assert "| COMPLETE | 9 |" in md and "| PRUNED | 1 |" in md and "| FAIL | 1 |" in md
    # the band table averages its cell: controls at widths 8 and 32 (≤64, dropout 0)
    assert "| ≤64 | 0 | 2 | +0.1600 | +0.1500 | 0.6300 |" in md
    # one plain sentence per width band and gap, benefit and cost in numbers:
    # final 1 - 0.11/0.41 = 73%, best epoch 1 - 0.10/0.40 = 75%
    assert (
        "At widths 65–256, dropout 0.4–0.8 reduced the final gap by 73% (vs dropout 0 at the "
        "nearest width) and changed best val AUPRC by +0.100 (mean of 1 trial)."
    ) in md
    assert (
        "At widths 65–256, dropout 0.4–0.8 reduced the best-epoch gap by 75% (vs dropout 0 at "
        "the nearest width) and changed best val AUPRC by +0.100 (mean of 1 trial)."
    ) in md
    # the failures are listed with their reasons
    assert f"trial 10: {REASON}" in md


@slow
def test_report_plots_are_real_pngs_referenced_relatively(written: ReportPaths) -> None:
    paths = written
    names = {p.name for p in paths.images}
    page = paths.html.read_text(encoding="utf-8")
    # heatmap, gap vs dropout, learning curves, history and importances are drawn
    assert {
        "gap_heatmap.png",
        "gap_vs_dropout.png",
        "learning_curves.png",
        "optimization_history.png",
        "param_importances.png",
    } <= names
    # a single-objective study has no Pareto front
    assert "pareto_front.png" not in names
    # each image is a non-empty PNG next to the report, referenced by its file name
    for image in paths.images:
        assert image.parent == paths.directory
        assert image.read_bytes()[:8] == PNG and image.stat().st_size > 2000
        assert f"src='{image.name}'" in page


@slow
def test_report_files_are_artifacts_of_the_parent_run(single: Built, written: ReportPaths) -> None:
    paths = written
    client = MlflowClient(tracking_uri=tracking_uri(single.cfg))
    logged = {Path(a.path).name for a in client.list_artifacts(single.parent, "report")}
    # every written file is logged under report/ on the study's parent run
    assert logged == {p.name for p in (paths.markdown, paths.html, *paths.images)}


@slow
def test_the_saved_best_model_is_evaluated_on_the_test_split(
    single: Built, written: ReportPaths
) -> None:
    scores = evaluate_best_on_test(single.cfg, single.study, read_store(tracking_uri(single.cfg)))
    trial_cfg = with_overrides(single.cfg, dict(single.study.best_trial.params))
    data = prepare(trial_cfg.data, trial_cfg.seed)
    model = build_model(trial_cfg, data)
    client = MlflowClient(tracking_uri=tracking_uri(single.cfg))
    with tempfile.TemporaryDirectory() as tmp:
        run_id = single.study.best_trial.user_attrs[RUN_ID]
        model.load_state_dict(torch.load(client.download_artifacts(run_id, MODEL_FILE, tmp)))
    with torch.no_grad():
        test_logits = model.eval()(data.x_test)
        val_logits = model(data.x_val)
    expected = score(test_logits, data.y_test, data.n_classes)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        test_logits.squeeze(-1), data.y_test.float()
    )
    assert scores is not None
    # the saved weights are scored on the test split in eval mode (trial 6 has p = 0.6)
    assert scores[metrics.TEST_AUPRC] == pytest.approx(expected["auprc"])
    assert scores[metrics.TEST_AUROC] == pytest.approx(expected["auroc"])  # same rule
    # the loss is BCE with logits, as in training (pos_weight none here)
    assert scores[metrics.TEST_LOSS] == pytest.approx(float(loss))
    # and not on the validation split
    assert scores[metrics.TEST_AUPRC] != pytest.approx(score(val_logits, data.y_val, 2)["auprc"])
    # the report shows the same test score
    md = written.markdown.read_text(encoding="utf-8")
    assert f"| {metrics.TEST_AUPRC} | {scores[metrics.TEST_AUPRC]:.4f} |" in md


@slow
def test_pareto_study_draws_its_front_and_has_no_test_score(pareto: Built) -> None:
    paths = write_report(pareto.cfg)
    md = paths.markdown.read_text(encoding="utf-8")
    # two objectives: the Pareto front is drawn
    assert "pareto_front.png" in {p.name for p in paths.images}
    # no saved model for the chosen trial: no test score, and the report says so
    assert evaluate_best_on_test(pareto.cfg, pareto.study, Tracker()) is None
    assert "No saved model for the best trial" in md
    # the chosen trial is the front's best by the first objective (val AUPRC)
    assert f"trial {BEST} is best by {metrics.BEST_VAL_AUPRC} among them" in md


def test_missing_study_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, "name=absent")
    db = runs_dir(cfg) / "optuna.db"
    # no storage at all: one line naming the study and the storage
    with pytest.raises(ConfigError, match=r"^no study 'absent' in sqlite:///.*run droplab study"):
        write_report(cfg)
    # and no database or report was created by asking
    assert not db.exists() and not (runs_dir(cfg) / "reports").exists()
    runs_dir(cfg).mkdir(parents=True)
    optuna.create_study(study_name="other", storage=study_storage(cfg))
    # a storage that holds other studies only: the same message
    with pytest.raises(ConfigError, match="no study 'absent'"):
        write_report(cfg)


def test_storage_password_is_masked(tmp_path: Path) -> None:
    url = "postgresql://droplab:hunter2@127.0.0.1:1/none"
    cfg = tiny_config(tmp_path, f"study.storage={url}")
    # an unreachable storage is bad input whose message never shows the password
    with pytest.raises(ConfigError) as caught:
        write_report(cfg)
    assert "hunter2" not in str(caught.value) and "droplab:***@" in str(caught.value)
