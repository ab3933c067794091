"""``droplab report``: what a study found, in numbers, as Markdown + HTML + PNGs.

Reads the Optuna study and its MLflow runs, never trains. The one exception to "never touches
the test split" lives here: :func:`test_score` evaluates the chosen configuration on it once.
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import torch
from optuna.trial import FrozenTrial, TrialState

from droplab import config as C
from droplab import metrics
from droplab import report_sections as S
from droplab import study_plots as P
from droplab.config import Config, ConfigError
from droplab.data import Dataset, prepare
from droplab.lit_module import LitMLP
from droplab.model import MLP
from droplab.report_sections import band_sentences  # noqa: F401 (public API)
from droplab.scoring import score
from droplab.storage import FAIL_REASON, RUN_ID, is_journal, open_storage
from droplab.study import BASELINE, OBJECTIVES, PARENT_RUN, trial_name
from droplab.study_summary import MODEL, MODEL_FILE, SUMMARY, best_trials
from droplab.tracking import make_tracker
from droplab.training import build_model, positive_weight

DROPOUT_KEY, WIDTH_KEY = "model.dropout", "model.width"
REPORT_FOLDER = "report"  # the parent run's artifact folder
REDUCTION_COLUMNS = (
    "number width dropout gap control_trials control_width control_gap "
    "reduction val_auprc control_val_auprc delta_val_auprc"
).split()


@dataclass(frozen=True)
class ReportPaths:
    """Where :func:`write_report` put the report."""

    html: Path
    markdown: Path
    directory: Path
    images: list[Path]


def load_study(cfg: Config) -> optuna.Study:
    """The study of ``cfg``; creates nothing when it is missing.

    Raises:
        ConfigError: there is no such study in the storage (one line, secrets masked).
    """
    name, url = C.study_name(cfg), C.study_storage(cfg)
    missing = ConfigError(f"no study '{name}' in {C.mask_secrets(url)}; run droplab study first")
    local = url.removeprefix("sqlite:///").split("?")[0] if url.startswith("sqlite:///") else url
    if (url.startswith("sqlite:///") or is_journal(url)) and not Path(local).is_file():
        raise missing  # opening would create an empty database or journal file
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url))
    except KeyError:
        raise missing from None


def trials_frame(study: optuna.Study, cfg: Config | None = None) -> pd.DataFrame:
    """One row per trial: number, state, dropout, width, every param, the summary metrics,
    ``baseline`` (a dropout-0 control), ``run_id``, ``fail_reason``, ``model_artifact`` and
    the objective ``values``. Dropout and width that were not searched come from ``cfg``."""
    fixed_p = cfg.model.dropout if cfg is not None else math.nan
    fixed_w = cfg.model.width if cfg is not None else math.nan
    rows = []
    for t in study.get_trials(deepcopy=False):
        summary = t.user_attrs.get(SUMMARY) or {}
        p = t.params.get(DROPOUT_KEY, fixed_p)
        p = float(p) if isinstance(p, int | float) else math.nan  # per-layer rates: no scalar
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "dropout": p,
                "width": float(t.params.get(WIDTH_KEY, fixed_w)),
                **t.params,
                **{key: float(summary.get(key, math.nan)) for key in metrics.SUMMARY_KEYS},
                "baseline": bool(t.user_attrs.get(BASELINE)) or p == 0.0,
                "run_id": t.user_attrs.get(RUN_ID),
                "fail_reason": t.user_attrs.get(FAIL_REASON),
                "model_artifact": bool(t.user_attrs.get(MODEL)),
                "values": tuple(t.values) if t.values else None,
            }
        )
    empty = ["number", "state", "dropout", "width", *metrics.SUMMARY_KEYS, "fail_reason"]
    return pd.DataFrame(rows, columns=None if rows else empty)


def gap_reduction(frame: pd.DataFrame, gap: str = metrics.BEST_GAP_LOSS) -> pd.DataFrame:
    """Each dropout trial against the dropout-0 control(s) at the nearest width, on ``gap``.

    The control is the mean of the dropout-0 trials at the smallest log2 width distance, if
    that is at most one octave; ``reduction = 1 - gap / gap_control`` and ``delta_val_auprc``
    (the cost) sit side by side. No control: NaN. ``final/gap_loss`` compares complete trials
    only: they all trained the whole budget, a pruned trial's last epoch came earlier.
    """
    usable = S.usable(frame, gap)
    controls = usable[usable["dropout"] == 0.0]
    trials = usable[usable["dropout"] > 0].iterrows()
    rows = [_against_control(r, controls, gap) for _, r in trials]
    out = pd.DataFrame(rows, columns=REDUCTION_COLUMNS)
    out["width_band"] = out["width"].map(P.width_band)
    out["dropout_band"] = out["dropout"].map(P.dropout_band)
    return out


def _against_control(row: pd.Series, controls: pd.DataFrame, gap_key: str) -> dict[str, Any]:
    distance = (np.log2(controls["width"]) - math.log2(row["width"])).abs()
    near = controls[(distance <= distance.min() + 1e-9) & (distance <= 1.0)]
    gap, auprc = row[gap_key], row[metrics.BEST_VAL_AUPRC]
    control_gap = float(near[gap_key].mean()) if len(near) else math.nan
    control_auprc = float(near[metrics.BEST_VAL_AUPRC].mean()) if len(near) else math.nan
    values = (
        int(row["number"]),
        row["width"],
        row["dropout"],
        gap,
        ", ".join(str(int(n)) for n in near["number"]),
        float(near["width"].mean()) if len(near) else math.nan,
        control_gap,
        metrics.reduction(gap, control_gap),
        auprc,
        control_auprc,
        auprc - control_auprc,
    )
    return dict(zip(REDUCTION_COLUMNS, values, strict=True))


def test_score(cfg: Config, study: optuna.Study) -> dict[str, float] | None:
    """The best configuration's saved model on the test split (the only use of that split).

    Multi-objective studies use the Pareto trial best by the first objective.

    Returns:
        ``test/auprc``, ``test/auroc`` and ``test/loss``; None when no saved model exists.
    """
    best = best_trials(study)
    if not best or not best[0].user_attrs.get(MODEL) or not best[0].user_attrs.get(RUN_ID):
        return None
    from mlflow.tracking import MlflowClient

    trial_cfg = C.with_overrides(cfg, dict(best[0].params))
    data = prepare(trial_cfg.data, trial_cfg.seed)
    model = build_model(trial_cfg, data)
    client = MlflowClient(tracking_uri=C.tracking_uri(cfg))
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(str(best[0].user_attrs[RUN_ID]), MODEL_FILE, tmp)
        model.load_state_dict(torch.load(local, map_location="cpu", weights_only=True))
    return _evaluate_test(trial_cfg, model, data)


test_score.__test__ = False  # type: ignore[attr-defined]  # pytest: not a test


@torch.no_grad()
def _evaluate_test(cfg: Config, model: MLP, data: Dataset) -> dict[str, float]:
    model.eval()
    x, y, chunk = data.x_test, data.y_test, cfg.train.eval_batch_size
    logits = torch.cat([model(x[i : i + chunk]) for i in range(0, len(x), chunk)])
    # LitMLP.loss is the training loss itself (BCE with logits + pos_weight, or cross-entropy).
    module = LitMLP(model, data.n_classes, cfg.train, (x, y), (x, y), positive_weight(cfg, data))
    scores = score(logits, y, data.n_classes)
    return {
        metrics.TEST_AUPRC: scores["auprc"],
        metrics.TEST_AUROC: scores["auroc"],
        metrics.TEST_LOSS: float(module.loss(logits, y)),
    }


def write_report(cfg: Config) -> ReportPaths:
    """Write ``<paths.runs>/reports/<study>/report.{md,html}`` and its PNGs; log them under
    ``report/`` on the study's MLflow parent run.

    Raises:
        ConfigError: the study does not exist.
    """
    study = load_study(cfg)
    out = C.runs_dir(cfg) / "reports" / re.sub(r"[^\w.-]", "_", study.study_name)
    out.mkdir(parents=True, exist_ok=True)
    frame = trials_frame(study, cfg)
    objectives = _objectives(cfg, study)
    images, notes = _figures(cfg, study, frame, objectives, out)
    blocks = [
        *S.header(cfg, study, frame, objectives),
        *S.best_section(study, objectives),
        *S.bands_section(frame),
        *S.reduction_section(
            gap_reduction(frame, metrics.FINAL_GAP_LOSS), gap_reduction(frame), cfg.train.epochs
        ),
        *S.test_section(study, test_score(cfg, study)),
        *S.failures_section(frame),
        *S.plots_section(images, notes),
    ]
    paths = ReportPaths(out / "report.html", out / "report.md", out, images)
    paths.markdown.write_text(P.to_markdown(blocks), encoding="utf-8")
    paths.html.write_text(P.to_html(blocks), encoding="utf-8")
    parent = study.user_attrs.get(PARENT_RUN)
    if parent and cfg.tracking.enabled:
        tracker = make_tracker(cfg)
        for path in (paths.markdown, paths.html, *images):
            tracker.log_artifact(str(parent), path, REPORT_FOLDER)
    return paths


def _objectives(cfg: Config, study: optuna.Study) -> list[str]:
    stored = study.user_attrs.get(OBJECTIVES)
    return [str(o) for o in stored] if stored else list(cfg.study.objectives)


def _figures(
    cfg: Config, study: optuna.Study, frame: pd.DataFrame, objectives: list[str], out: Path
) -> tuple[list[Path], list[str]]:
    """Every figure the data allows, and a note for each one it does not."""
    for old in out.glob("*.png"):  # a figure the data no longer allows must not linger
        old.unlink()
    usable, done = S.usable(frame), _ranked(study)
    images, notes = [], []
    if not usable.empty:
        complete = S.usable(frame, metrics.FINAL_GAP_LOSS)
        images.append(P.gap_heatmap(complete, usable, out / "gap_heatmap.png"))
        images.append(P.gap_by_width_band(complete, usable, out / "gap_vs_dropout.png"))
    curves = _curves(cfg, done[:3])
    if curves:
        images.append(P.learning_curves(curves, out / "learning_curves.png"))
    if done:
        maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        numbers, values = [t.number for t in done], [t.values[0] for t in done]
        path = out / "optimization_history.png"
        images.append(P.optimization_history(numbers, values, objectives[0], maximize, path))
    importances = _importances(study, done)
    if isinstance(importances, str):
        notes.append(f"Parameter importances skipped: {importances}.")
    else:
        target = objectives[0] if len(objectives) == 1 else "the Pareto front"
        images.append(P.param_importances(importances, target, out / "param_importances.png"))
    if len(study.directions) == 2 and done:
        points = [(t.values[0], t.values[1]) for t in done]
        front = [(t.values[0], t.values[1]) for t in best_trials(study)]
        images.append(P.pareto_front(points, front, objectives, out / "pareto_front.png"))
    return images, notes


def _ranked(study: optuna.Study) -> list[FrozenTrial]:
    """Complete trials, best first by the first objective."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
    return sorted(done, key=lambda t: sign * t.values[0])


def _curves(cfg: Config, trials: list[FrozenTrial]) -> list[P.Curves]:
    """Eval-mode train and val loss per epoch, read back from each trial's MLflow run."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client, curves = MlflowClient(tracking_uri=C.tracking_uri(cfg)), []
    for t in trials if cfg.tracking.enabled else []:
        run_id = str(t.user_attrs.get(RUN_ID))
        try:
            train, val = (
                {m.step: m.value for m in client.get_metric_history(run_id, key)}
                for key in (metrics.TRAIN_LOSS, metrics.VAL_LOSS)
            )
        except MlflowException:  # no such run in this store (moved, or another URI)
            continue
        epochs = sorted(set(train) & set(val))
        best = (t.user_attrs.get(SUMMARY) or {}).get(metrics.BEST_EPOCH, math.nan)
        title = trial_name(t.number, t.params)
        losses = [train[e] for e in epochs], [val[e] for e in epochs]
        curves += [P.Curves(title, epochs, *losses, float(best))] if epochs else []
    return curves


def _importances(study: optuna.Study, done: list[FrozenTrial]) -> dict[str, float] | str:
    """Optuna's importances (for the objective, or for reaching the Pareto front), or why
    there are none."""
    if len(done) < 2:
        return f"{len(done)} complete trial(s); at least 2 are needed"
    names = {k for t in done for k in t.params}
    varying = sorted(p for p in names if len({repr(t.params.get(p)) for t in done}) > 1)
    if len(varying) < 2:
        return f"{len(varying)} parameter(s) vary; importances need at least 2"
    try:  # no target: Optuna then follows the study's directions itself
        return optuna.importance.get_param_importances(study, params=varying)
    except (ValueError, RuntimeError) as exc:
        return f"Optuna could not compute them ({exc})"
