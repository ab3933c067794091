"""The sections of a study report, as blocks that ``study_plots`` renders to Markdown and HTML."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from droplab import metrics, tags
from droplab.config.identity import mask_secrets
from droplab.config.paths import study_storage
from droplab.config.schema import Config
from droplab.render.page import Block, fmt, percent, signed
from droplab.study.plots import band_order, dropout_band, width_band
from droplab.study.trials import best_trials

USABLE = (TrialState.COMPLETE.name, TrialState.PRUNED.name)


def usable_trials(frame: pd.DataFrame, gap: str = metrics.BEST_GAP_LOSS) -> pd.DataFrame:
    """Finished trials that carry ``gap`` (pruned ones without a summary are left out); for
    ``final/gap_loss`` complete trials only, the ones that trained the whole budget."""
    states = USABLE if gap == metrics.BEST_GAP_LOSS else (TrialState.COMPLETE.name,)
    keep = frame["state"].isin(states) & frame[gap].notna()
    return frame[keep & frame["width"].notna() & frame["dropout"].notna()]


def nearest_controls(controls: pd.DataFrame, width: float) -> pd.DataFrame:
    """The dropout-0 trials at the smallest log2 width distance from ``width``, if that is at
    most one octave (empty otherwise)."""
    distance = (np.log2(controls["width"]) - math.log2(width)).abs()
    return controls[(distance <= distance.min() + 1e-9) & (distance <= 1.0)]


def band_sentences(reduction: pd.DataFrame, gap: str = "the gap") -> list[str]:
    """One plain sentence per width band, for its dropout band with the largest mean
    reduction of ``gap`` (the number of dropout bands it was chosen from is said)."""
    lines = []
    for band in band_order(list(reduction["width_band"])):
        part = reduction[(reduction["width_band"] == band) & reduction["reduction"].notna()]
        if part.empty:
            lines.append(
                f"At widths {band}, no dropout trial has a dropout-0 control that "
                "overfits (positive gap) within one octave of its width."
            )
            continue
        means = part.groupby("dropout_band")[["reduction", "delta_val_auprc"]].mean()
        best = str(means["reduction"].idxmax())
        r, d = means.loc[best, "reduction"], means.loc[best, "delta_val_auprc"]
        n = int((part["dropout_band"] == best).sum())
        of = f"; the best of {len(means)} dropout bands" if len(means) > 1 else ""
        lines.append(
            f"At widths {band}, dropout {best} {'reduced' if r >= 0 else 'increased'} {gap} "
            f"by {abs(r):.0%} (vs dropout 0 at the nearest width) and changed best val AUPRC "
            f"by {signed(d, 3).replace('-', '−')} (mean of {n} trial{'s' if n > 1 else ''}{of})."
        )
    return lines


def header(
    cfg: Config, study: optuna.Study, frame: pd.DataFrame, objectives: list[str]
) -> list[Block]:
    goals = ", ".join(
        f"{o} ({d.name.lower()})" for o, d in zip(objectives, study.directions, strict=False)
    )
    counts = frame["state"].value_counts()
    states = [TrialState.COMPLETE.name, TrialState.PRUNED.name, TrialState.FAIL.name]
    states += [s for s in counts.index if s not in states]
    table = pd.DataFrame({"state": states, "trials": [int(counts.get(s, 0)) for s in states]})
    text = (
        f"Storage {mask_secrets(study_storage(cfg))}; MLflow parent run "
        f"{study.user_attrs.get(tags.PARENT_RUN) or 'none'}; objectives: {goals}. The gap is "
        "val loss - train loss, both measured in eval mode (dropout off), so it measures "
        f"overfitting and not dropout's noise: {metrics.FINAL_GAP_LOSS} after the last epoch, "
        f"{metrics.BEST_GAP_LOSS} at the epoch of the best objective."
    )
    title = f"droplab report: study {study.study_name}"
    return [("h1", title), ("p", text), ("h2", "Trials by state"), ("table", table)]


def best_section(study: optuna.Study, objectives: list[str]) -> list[Block]:
    head: list[Block] = [("h2", "Best configuration")]
    best = best_trials(study)
    if not best:
        return [*head, ("p", "No complete trial yet.")]
    t, summary = best[0], best[0].user_attrs.get(tags.SUMMARY) or {}
    rows = [(key, fmt(value)) for key, value in t.params.items()]
    rows += [(f"{o} (objective)", fmt(v)) for o, v in zip(objectives, t.values, strict=False)]
    rows += [(k, fmt(int(v) if k == metrics.BEST_EPOCH else v)) for k, v in summary.items()]
    text = f"Trial {t.number} is the best by {objectives[0]}."
    if len(study.directions) > 1:
        text = (
            f"The Pareto front holds {len(best)} trial(s); trial {t.number} is best by "
            f"{objectives[0]} among them."
        )
    table = pd.DataFrame(rows, columns=["setting or metric", "value"])
    return [*head, ("p", text), ("table", table)]


def bands_section(frame: pd.DataFrame) -> list[Block]:
    head: Block = ("h2", "Gap and val AUPRC by width and dropout band")
    done = usable_trials(frame)
    keys = [done["width"].map(width_band), done["dropout"].map(dropout_band)]
    rows = []
    for (wb, db), cell in done.groupby(keys):
        final = cell[cell["state"] == TrialState.COMPLETE.name][metrics.FINAL_GAP_LOSS]
        gap, auprc = cell[metrics.BEST_GAP_LOSS].mean(), cell[metrics.BEST_VAL_AUPRC].mean()
        rows.append((wb, db, len(cell), signed(final.mean()), signed(gap), fmt(auprc)))
    if not rows:
        return [head, ("p", "No trial with a summary yet.")]
    order = band_order([b for r in rows for b in r[:2]])
    rows.sort(key=lambda r: (order.index(r[0]), order.index(r[1])))
    columns = ["width", "dropout", "trials", f"mean {metrics.FINAL_GAP_LOSS} (complete)"]
    columns += [f"mean {metrics.BEST_GAP_LOSS}", f"mean {metrics.BEST_VAL_AUPRC}"]
    return [head, ("table", pd.DataFrame(rows, columns=columns))]


def reduction_section(final: pd.DataFrame, best: pd.DataFrame, epochs: int) -> list[Block]:
    """The reduction of the final gap (the headline: every complete trial trained ``epochs``
    epochs) and of the gap at the best epoch, per width band and per trial."""
    head: list[Block] = [("h2", "Gap reduction against dropout 0")]
    if best.empty:
        return [*head, ("p", "No dropout trial with a summary yet.")]
    by_final = final.set_index("number")
    table = pd.DataFrame(
        {
            "trial": best["number"],
            "width": best["width"].map("{:.0f}".format),
            "dropout": best["dropout"].map(fmt),
            metrics.FINAL_GAP_LOSS: best["number"].map(by_final["gap"]).map(signed),
            "control final gap": best["number"].map(by_final["control_gap"]).map(signed),
            "reduction (final)": best["number"].map(by_final["reduction"]).map(percent),
            metrics.BEST_GAP_LOSS: best["gap"].map(signed),
            "control best gap": best["control_gap"].map(signed),
            "reduction (best)": best["reduction"].map(percent),
            "control trial(s)": best["control_trials"].replace("", "none within 1 octave"),
            metrics.BEST_VAL_AUPRC: best["val_auprc"].map(fmt),
            "change in val AUPRC": best["delta_val_auprc"].map(signed),
        }
    )
    final_head = (
        f"After the last epoch ({metrics.FINAL_GAP_LOSS}; every complete trial trained "
        f"{epochs} epochs, pruned trials are left out):"
    )
    best_head = f"At each trial's best epoch ({metrics.BEST_GAP_LOSS}):"
    note = (
        "reduction = 1 - gap / control gap, where the control is the mean of the dropout-0 "
        "trials at the nearest width (log2 distance, at most one octave); a control that does "
        "not overfit (gap <= 0) gives no reduction. The two gaps answer different questions: "
        "the final gap is how far a net overfits in the same training budget, which is what "
        "dropout acts on; the best-epoch gap is what is left after early stopping, and a "
        "dropout-0 net reaches its best epoch sooner, before it has overfitted much."
    )
    return [
        *head,
        ("p", final_head),
        ("ul", band_sentences(final, "the final gap")),
        ("p", best_head),
        ("ul", band_sentences(best, "the best-epoch gap")),
        ("p", note),
        ("table", table),
    ]


KIND_KEY = "model.dropout_kind"


def kinds_section(frame: pd.DataFrame, final: pd.DataFrame, best: pd.DataFrame) -> list[Block]:
    """When ``model.dropout_kind`` is searched: the gap, its reduction against the dropout-0
    controls (as in :func:`reduction_section`), val AUPRC and ECE, per kind of dropout."""
    if KIND_KEY not in frame.columns:
        return []
    done = usable_trials(frame)
    done = done[done["dropout"] > 0]  # a dropout-0 trial is a control, whatever its kind
    kind_of = done.set_index("number")[KIND_KEY]
    rows = []
    for kind, part in done.groupby(KIND_KEY):
        final_r = final[final["number"].map(kind_of) == kind]["reduction"]
        best_r = best[best["number"].map(kind_of) == kind]["reduction"]
        complete = part[part["state"] == TrialState.COMPLETE.name][metrics.FINAL_GAP_LOSS]
        ece = part.get(metrics.BEST_VAL_ECE, pd.Series(dtype=float)).mean()
        rows.append(
            (kind, len(part), signed(complete.mean()), percent(final_r.mean()),
             signed(part[metrics.BEST_GAP_LOSS].mean()), percent(best_r.mean()),
             fmt(part[metrics.BEST_VAL_AUPRC].mean()), fmt(ece))
        )  # fmt: skip
    columns = ["dropout kind", "trials", f"mean {metrics.FINAL_GAP_LOSS}", "reduction (final)"]
    columns += [f"mean {metrics.BEST_GAP_LOSS}", "reduction (best)"]
    columns += [f"mean {metrics.BEST_VAL_AUPRC}", f"mean {metrics.BEST_VAL_ECE}"]
    note = (
        "Dropout trials (p > 0) grouped by the searched dropout kind; reductions are the "
        "means of the per-trial reductions against the dropout-0 controls at the nearest width."
    )
    table = pd.DataFrame(rows, columns=columns)
    return [("h2", "Gap by dropout kind"), ("p", note), ("table", table)]


def test_section(study: optuna.Study, scores: dict[str, float] | None) -> list[Block]:
    head: list[Block] = [("h2", "Test split (best configuration only)")]
    if scores is None:
        return [*head, ("p", "No saved model for the best trial, so no test-split score.")]
    table = pd.DataFrame([(k, fmt(v)) for k, v in scores.items()], columns=["metric", "value"])
    best = best_trials(study)[0]
    epoch = (best.user_attrs.get(tags.SUMMARY) or {}).get(metrics.BEST_EPOCH)
    when = "its best epoch" if epoch is None else f"its best epoch, {epoch:.0f}"
    text = (
        f"Trial {best.number}'s saved weights, evaluated once, here, on the held-out test split "
        "that played no part in choosing them. They are the weights of "
        f"{when}, where its objective was read."
    )
    return [*head, ("p", text), ("table", table)]


def failures_section(frame: pd.DataFrame) -> list[Block]:
    failed = frame[frame["state"] == TrialState.FAIL.name]
    items = [
        f"trial {n}: {reason or 'no reason recorded'}"
        for n, reason in zip(failed["number"], failed["fail_reason"], strict=True)
    ]
    return [("h2", "Failures"), ("ul", items) if items else ("p", "No failed trials.")]


def plots_section(images: list[Path], notes: list[str]) -> list[Block]:
    blocks: list[Block] = [("h2", "Plots")]
    blocks += [("img", (image.name, image.stem.replace("_", " "))) for image in images]
    return [*blocks, ("ul", notes)] if notes else blocks
