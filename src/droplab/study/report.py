"""``droplab report``: what a study found, in numbers, as Markdown + HTML + PNGs.

Reads the Optuna study and its MLflow runs, never trains. The one exception to "never touches
the test split" lives here: :func:`evaluate_best_on_test` scores the chosen configuration on
it once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import torch
from optuna.trial import FrozenTrial

from droplab import metrics, tags
from droplab.config.paths import runs_dir, tracking_uri
from droplab.config.schema import Config
from droplab.data.splits import Dataset
from droplab.fit.lit_module import LitMLP
from droplab.fit.model import MLP
from droplab.fit.scoring import score
from droplab.fit.trainer import positive_weight
from droplab.render.page import Block, to_html, to_markdown
from droplab.study import dashboard, seed_report
from droplab.study.plots import (
    Curves,
    dropout_band,
    gap_by_width_band,
    gap_heatmap,
    learning_curves,
    optimization_history,
    param_importances,
    pareto_front,
    width_band,
)
from droplab.study.sections import (
    bands_section,
    best_section,
    failures_section,
    header,
    kinds_section,
    nearest_controls,
    plots_section,
    reduction_section,
    test_section,
    usable_trials,
)
from droplab.study.trials import (
    best_trials,
    first_direction,
    load_study,
    load_trial_model,
    ranked_trials,
    trial_name,
    trials_frame,
)
from droplab.tracking.connect import make_tracker, read_store
from droplab.tracking.runs import failure_reason
from droplab.tracking.store import RunNotFound, Tracker

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


def gap_reduction(frame: pd.DataFrame, gap: str = metrics.BEST_GAP_LOSS) -> pd.DataFrame:
    """Each dropout trial against the dropout-0 control(s) at the nearest width, on ``gap``.

    The control is the mean of the dropout-0 trials at the smallest log2 width distance, if
    that is at most one octave; ``reduction = 1 - gap / gap_control`` and ``delta_val_auprc``
    (the cost) sit side by side. No control: NaN. ``final/gap_loss`` compares complete trials
    only: they all trained the whole budget, a pruned trial's last epoch came earlier.
    """
    usable = usable_trials(frame, gap)
    controls = usable[usable["dropout"] == 0.0]
    trials = usable[usable["dropout"] > 0].iterrows()
    rows = [_against_control(r, controls, gap) for _, r in trials]
    out = pd.DataFrame(rows, columns=REDUCTION_COLUMNS)
    out["width_band"] = out["width"].map(width_band)
    out["dropout_band"] = out["dropout"].map(dropout_band)
    return out


def _against_control(row: pd.Series, controls: pd.DataFrame, gap_key: str) -> dict[str, Any]:
    near = nearest_controls(controls, row["width"])
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


def evaluate_best_on_test(
    cfg: Config, study: optuna.Study, store: Tracker
) -> dict[str, float] | None:
    """The best configuration's saved model on the test split (the only use of that split).

    Multi-objective studies use the Pareto trial best by the first objective.

    Args:
        cfg: the study's config.
        study: the finished study.
        store: the tracker holding the best trial's run (its saved weights).

    Returns:
        ``test/auprc``, ``test/auroc`` and ``test/loss``; None when no saved model exists.
    """
    best = best_trials(study)
    if (
        not best
        or not best[0].user_attrs.get(tags.MODEL)
        or not best[0].user_attrs.get(tags.RUN_ID)
    ):
        return None
    loaded = load_trial_model(cfg, store, best[0])
    return _evaluate_test(loaded.cfg, loaded.model, loaded.data)


@torch.no_grad()
def _evaluate_test(cfg: Config, model: MLP, data: Dataset) -> dict[str, float]:
    model.eval()
    x, y, chunk = data.x_test, data.y_test, cfg.train.eval_batch_size
    if data.is_regression:
        # The test split in the place of val; an MSE fit's noise precision is the train split's.
        # (A learned Gaussian precision is not saved with the weights: tau is then 1.)
        train = (data.x_train, data.y_train)
        lit = LitMLP(model, 0, cfg.train, train, (x, y), target_std=data.target_std)
        lit.evaluate("train")
        got = lit.evaluate("val")
        return {
            metrics.TEST_RMSE: got[metrics.VAL_RMSE],
            metrics.TEST_NLL: got[metrics.VAL_NLL],
            metrics.TEST_LOSS: got[metrics.VAL_LOSS],
        }
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
    out = runs_dir(cfg) / "reports" / re.sub(r"[^\w.-]", "_", study.study_name)
    out.mkdir(parents=True, exist_ok=True)
    frame = trials_frame(study, cfg)
    objectives = _objectives(cfg, study)
    store = read_store(tracking_uri(cfg))  # the trials' runs: curves, the best model
    done = ranked_trials(study)
    best_curves = _curves(cfg, store, done[:3])
    images, notes = _figures(cfg, study, frame, objectives, out, best_curves)
    seeds = max((len(s) for s in frame.get("seed_summaries", [])), default=0)
    final, at_best = gap_reduction(frame, metrics.FINAL_GAP_LOSS), gap_reduction(frame)
    findings = [
        *header(cfg, study, frame, objectives),
        seed_report.header_note(seeds),
        *_findings(cfg, study, frame, objectives, best_trials(study) if seeds else []),
        *kinds_section(frame, final, at_best),
        *test_section(study, evaluate_best_on_test(cfg, study, store)),
        *failures_section(frame),
    ]
    parent = study.user_attrs.get(tags.PARENT_RUN)
    where = f"{out / 'report.html'}" + (
        f" (and under {REPORT_FOLDER}/ on the MLflow run study-{study.study_name})"
        if parent and cfg.tracking.enabled
        else ""
    )
    note = dashboard.note_markdown(findings, where)
    curves = best_curves + _curves(cfg, store, _controls(frame, done))
    notes += _publish(study, note, curves, frame)
    blocks = [*findings, *plots_section(images, notes)]
    paths = ReportPaths(out / "report.html", out / "report.md", out, images)
    paths.markdown.write_text(to_markdown(blocks), encoding="utf-8")
    paths.html.write_text(to_html(blocks), encoding="utf-8")
    if parent and cfg.tracking.enabled:
        tracker = make_tracker(cfg)
        for path in (paths.markdown, paths.html, *images):
            tracker.log_artifact(str(parent), path, REPORT_FOLDER)
        tracker.set_tags(str(parent), {tags.RUN_NOTE: dashboard.fit_note(note)})
    return paths


def _controls(frame: pd.DataFrame, done: list[FrozenTrial]) -> list[FrozenTrial]:
    """Up to 3 complete dropout-0 controls that are not among the best 3 already."""
    numbers = set(frame.loc[frame["baseline"], "number"])
    return [t for t in done[3:] if t.number in numbers][:3]


def _publish(
    study: optuna.Study, note: str, curves: list[Curves], frame: pd.DataFrame
) -> list[str]:
    """The note and figures on optuna-dashboard; why not, when that fails (the report stays)."""
    try:
        figures = {dashboard.GAP_ID: dashboard.gap_figure(frame)}
        if curves:
            figures[dashboard.CURVES_ID] = dashboard.curves_figure(curves)
        dashboard.publish(study, note, figures)
    except Exception as exc:  # a dashboard problem must not lose the report
        return [f"optuna-dashboard note and figures not written: {failure_reason(exc)}."]
    return []


def _findings(
    cfg: Config,
    study: optuna.Study,
    frame: pd.DataFrame,
    objectives: list[str],
    seeded_best: list[FrozenTrial],
) -> list[Block]:
    """Best configuration, bands and reductions: over seeds with CIs when the trials trained
    ``study.seeds`` (``seeded_best``: the best trials), else of one run per trial."""
    if seeded_best:
        return [
            *seed_report.best_section(seeded_best[0], objectives, cfg.study.aggregate),
            *seed_report.bands_section(frame),
            *seed_report.reduction_section(frame, cfg.train.epochs),
        ]
    return [
        *best_section(study, objectives),
        *bands_section(frame),
        *reduction_section(
            gap_reduction(frame, metrics.FINAL_GAP_LOSS), gap_reduction(frame), cfg.train.epochs
        ),
    ]


def _objectives(cfg: Config, study: optuna.Study) -> list[str]:
    stored = study.user_attrs.get(tags.OBJECTIVES)
    return [str(o) for o in stored] if stored else list(cfg.study.objectives)


def _figures(
    cfg: Config,
    study: optuna.Study,
    frame: pd.DataFrame,
    objectives: list[str],
    out: Path,
    curves: list[Curves],
) -> tuple[list[Path], list[str]]:
    """Every figure the data allows, and a note for each one it does not."""
    for old in out.glob("*.png"):  # a figure the data no longer allows must not linger
        old.unlink()
    usable, done = usable_trials(frame), ranked_trials(study)
    images, notes = [], []
    if not usable.empty:
        complete = usable_trials(frame, metrics.FINAL_GAP_LOSS)
        images.append(gap_heatmap(complete, usable, out / "gap_heatmap.png"))
        images.append(gap_by_width_band(complete, usable, out / "gap_vs_dropout.png"))
    if curves:
        images.append(learning_curves(curves, out / "learning_curves.png"))
    if done:
        maximize = first_direction(study) == metrics.MAXIMIZE
        numbers, values = [t.number for t in done], [t.values[0] for t in done]
        path = out / "optimization_history.png"
        images.append(optimization_history(numbers, values, objectives[0], maximize, path))
    importances = _importances(study, done)
    if isinstance(importances, str):
        notes.append(f"Parameter importances skipped: {importances}.")
    else:
        target = objectives[0] if len(objectives) == 1 else "the Pareto front"
        images.append(param_importances(importances, target, out / "param_importances.png"))
    if len(study.directions) == 2 and done:
        points = [(t.values[0], t.values[1]) for t in done]
        front = [(t.values[0], t.values[1]) for t in best_trials(study)]
        images.append(pareto_front(points, front, objectives, out / "pareto_front.png"))
    return images, notes


def _curves(cfg: Config, store: Tracker, trials: list[FrozenTrial]) -> list[Curves]:
    """Eval-mode train and val loss per epoch, read back from each trial's MLflow run."""
    curves = []
    for t in trials if cfg.tracking.enabled else []:
        run_id = str(t.user_attrs.get(tags.RUN_ID))
        try:
            train, val = (
                {step: values[-1] for step, values in store.metric_history(run_id, key).items()}
                for key in (metrics.TRAIN_LOSS, metrics.VAL_LOSS)
            )
        except RunNotFound:  # no such run in this store (moved, or another URI)
            continue
        epochs = sorted(set(train) & set(val))
        best = (t.user_attrs.get(tags.SUMMARY) or {}).get(metrics.BEST_EPOCH, math.nan)
        title = trial_name(t.number, t.params)
        losses = [train[e] for e in epochs], [val[e] for e in epochs]
        bands = _seed_bands(store, t, epochs)
        if bands:
            title += f" (mean of {len(t.user_attrs[tags.SEED_RUNS])} seeds)"
        curves += [Curves(title, epochs, *losses, float(best), bands)] if epochs else []
    return curves


def _seed_bands(
    store: Tracker, trial: FrozenTrial, epochs: list[int]
) -> dict[str, tuple[list[float], list[float]]]:
    """With ``study.seeds``: per epoch, the lowest and highest train and val loss over the
    trial's seed runs (the band around the trial run's mean curve)."""
    seed_runs = trial.user_attrs.get(tags.SEED_RUNS) or {}
    out = {}
    for key in (metrics.TRAIN_LOSS, metrics.VAL_LOSS) if len(seed_runs) > 1 else ():
        try:
            series = [store.metric_history(str(r), key) for r in seed_runs.values()]
        except RunNotFound:
            return {}
        values = [[s[e][-1] for s in series if e in s] for e in epochs]
        out[key] = ([min(v) for v in values], [max(v) for v in values])
    return out


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
