"""Report sections of a study with ``study.seeds``: every number over seeds, with its CI.

Each trial stored each seed's summary (``tags.SEED_SUMMARIES``), and every trial -- the
dropout-0 controls included -- trained the same seeds, so a trial and its control are
*paired* by seed: the comparison uses :mod:`droplab.compare.stats` as ``droplab compare``
does (Student-t CI of the mean, Fieller CI of the reduction, paired t and Wilcoxon tests).
A control is the dropout-0 trial(s) at the nearest width (within one octave); several at the
same distance are averaged seed by seed. A band of several trials is averaged seed by seed
first, so its CI is over seeds, not over trials.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from droplab import metrics, tags
from droplab.compare.stats import Contrast, Interval, contrast, mean_ci
from droplab.render.page import Block, fmt, percent, signed
from droplab.study.plots import band_order, dropout_band, width_band
from droplab.study.sections import nearest_controls, usable_trials

PerSeed = dict[int, float]


def seed_summaries(trial: FrozenTrial) -> dict[int, dict[str, float]]:
    """``{seed: summary}`` stored by a trial with ``study.seeds`` (empty without)."""
    stored = trial.user_attrs.get(tags.SEED_SUMMARIES) or {}
    return {int(s): {k: float(v) for k, v in summary.items()} for s, summary in stored.items()}


def per_seed(frame: pd.DataFrame, numbers: Sequence[int], key: str) -> PerSeed:
    """Seed by seed, the mean of ``key`` over the trials ``numbers`` (seeds all of them have)."""
    rows = [frame.loc[frame["number"] == n, "seed_summaries"].iloc[0] for n in numbers]
    seeds = set.intersection(*(set(r) for r in rows)) if rows else set()
    return {s: float(np.mean([r[s][key] for r in rows])) for s in sorted(seeds)}


def ci_text(ci: Interval, show: str = "fmt") -> str:
    """``0.5123 (95% CI 0.50 to 0.52)``; ``percent``/``signed`` formats the same way."""
    form = {"fmt": fmt, "percent": percent, "signed": signed}[show]
    if not ci.bounded:
        bounds = "unbounded" if math.isinf(ci.low) else "no CI"
        return f"{form(ci.estimate)} ({bounds})"
    return f"{form(ci.estimate)} (95% CI {form(ci.low)} to {form(ci.high)})"


def header_note(n_seeds: int) -> Block:
    if n_seeds <= 1:
        return (
            "p",
            "Every figure below is single-seed: each trial trained one seed, so no "
            "number here has a confidence interval; set study.seeds for paired CIs.",
        )
    return (
        "p",
        f"Every trial trained the same {n_seeds} seeds (study.seeds): figures are "
        "means over seeds with 95% CIs; comparisons with the dropout-0 controls are "
        "paired by seed.",
    )


def best_section(best: FrozenTrial, objectives: Sequence[str], aggregate: str) -> list[Block]:
    """The best configuration, its value, and each summary metric's mean and CI over seeds."""
    summaries = seed_summaries(best)
    seeds = sorted(summaries)
    rows = [(key, fmt(value), "", "") for key, value in best.params.items()]
    for key in metrics.SUMMARY_KEYS:
        values = [summaries[s][key] for s in seeds if key in summaries[s]]
        ci = mean_ci(values)
        each = ", ".join(f"{v:.4f}" for v in values)
        rows.append((key, fmt(ci.estimate), f"{fmt(ci.low)} to {fmt(ci.high)}", each))
    value = ", ".join(f"{o} {fmt(v)}" for o, v in zip(objectives, best.values, strict=False))
    first = mean_ci([summaries[s][objectives[0]] for s in seeds])
    text = (
        f"Trial {best.number} is the best by the {aggregate} over {len(seeds)} seeds of "
        f"{objectives[0]} (trial value: {value}): {objectives[0]} = {ci_text(first)} "
        f"over seeds {seeds}."
    )
    columns = ["setting or metric", "mean over seeds", "95% CI", "per seed"]
    table = pd.DataFrame(rows, columns=columns)
    return [("h2", "Best configuration"), ("p", text), ("table", table)]


def paired(frame: pd.DataFrame, gap: str) -> pd.DataFrame:
    """Each dropout trial against its control(s), paired by seed, on ``gap`` and AUPRC."""
    usable = usable_trials(frame, gap)
    controls = usable[usable["dropout"] == 0.0]
    rows = []
    for _, row in usable[usable["dropout"] > 0].iterrows():
        near = nearest_controls(controls, row["width"])
        if near.empty:
            continue
        pair = _contrasts(frame, [int(row["number"])], list(near["number"]), gap)
        rows.append(
            {
                "number": int(row["number"]),
                "width": row["width"],
                "dropout": row["dropout"],
                "controls": list(near["number"]),
                **pair,
            }
        )
    return pd.DataFrame(rows)


def _contrasts(
    frame: pd.DataFrame, trials: Sequence[int], controls: Sequence[int], gap: str
) -> dict[str, Contrast]:
    return {
        key: contrast(key, per_seed(frame, trials, key), per_seed(frame, controls, key))
        for key in (gap, metrics.BEST_VAL_AUPRC)
    }


def band_sentences(frame: pd.DataFrame, gap: str, label: str) -> list[str]:
    """Per width band, the dropout band with the largest paired reduction of ``gap``, its CI
    and tests, and the change in best val AUPRC beside it (the cost)."""
    usable = usable_trials(frame, gap)
    controls = usable[usable["dropout"] == 0.0]
    trials = usable[usable["dropout"] > 0]
    lines = []
    for band in band_order(list(trials["width"].map(width_band))):
        found: dict[str, tuple[dict[str, Contrast], int]] = {}
        part = trials[trials["width"].map(width_band) == band]
        for db, cell in part.groupby(part["dropout"].map(dropout_band)):
            near = {int(n) for w in cell["width"] for n in nearest_controls(controls, w)["number"]}
            if near:
                pair = _contrasts(frame, list(cell["number"]), sorted(near), gap)
                found[str(db)] = (pair, len(cell))
        lines.append(_sentence(band, found, gap, label))
    return lines


def _sentence(
    band: str, found: Mapping[str, tuple[dict[str, Contrast], int]], gap: str, label: str
) -> str:
    scored = {db: v for db, v in found.items() if v[0][gap].reduction is not None}
    scored = {db: v for db, v in scored.items() if not math.isnan(v[0][gap].reduction.estimate)}  # type: ignore[union-attr]
    if not scored:
        return (
            f"At widths {band}, no dropout trial has a dropout-0 control within one octave "
            "that overfits on average over the seeds."
        )
    db = max(scored, key=lambda k: scored[k][0][gap].reduction.estimate)  # type: ignore[union-attr]
    pair, n = scored[db]
    red, cost = pair[gap].reduction, pair[metrics.BEST_VAL_AUPRC]
    assert red is not None
    return (
        f"At widths {band}, dropout {db} changed {label} by {ci_text(red, 'percent')} as a "
        f"reduction against dropout 0 (paired over {len(pair[gap].seeds)} seeds; t-test "
        f"p = {pair[gap].p['t']:.3g}, Wilcoxon p = {pair[gap].p['wilcoxon']:.3g}) and best val "
        f"AUPRC by {ci_text(cost.diff, 'signed')} ({n} trial{'s' if n > 1 else ''}; the best "
        f"of {len(scored)} dropout band{'s' if len(scored) > 1 else ''} by the estimate)."
    )


def reduction_section(frame: pd.DataFrame, epochs: int) -> list[Block]:
    """The paired reduction of the final and best-epoch gaps, by band and per trial."""
    head: list[Block] = [("h2", "Gap reduction against dropout 0 (paired by seed)")]
    final, best = paired(frame, metrics.FINAL_GAP_LOSS), paired(frame, metrics.BEST_GAP_LOSS)
    if best.empty:
        return [*head, ("p", "No dropout trial with a dropout-0 control within one octave.")]
    by_final = final.set_index("number") if not final.empty else pd.DataFrame()
    rows = []
    for _, r in best.iterrows():
        f = by_final.loc[r["number"]] if r["number"] in by_final.index else None
        fr = f[metrics.FINAL_GAP_LOSS] if f is not None else None
        rows.append(
            (
                int(r["number"]),
                f"{r['width']:.0f}",
                fmt(r["dropout"]),
                ", ".join(str(n) for n in r["controls"]),
                ci_text(fr.reduction, "percent") if fr is not None and fr.reduction else "—",
                f"{fr.p['t']:.3g} / {fr.p['wilcoxon']:.3g}" if fr is not None else "—",
                ci_text(r[metrics.BEST_GAP_LOSS].reduction, "percent"),
                ci_text(r[metrics.BEST_VAL_AUPRC].diff, "signed"),
            )
        )
    columns = [
        "trial",
        "width",
        "dropout",
        "control trial(s)",
        "reduction (final gap)",
        "p (t / Wilcoxon, final)",
        "reduction (best-epoch gap)",
        "change in val AUPRC",
    ]
    note = (
        f"reduction = 1 - mean gap / mean control gap over the seeds both trained (Fieller "
        f"95% CI; 'unbounded' when the control's gap is not clearly above zero); complete "
        f"trials only for the final gap (all trained {epochs} epochs). The change in val AUPRC "
        "is the paired mean difference with its t CI."
    )
    return [
        *head,
        ("p", "After the last epoch:"),
        ("ul", band_sentences(frame, metrics.FINAL_GAP_LOSS, "the final gap")),
        ("p", "At each trial's best epoch:"),
        ("ul", band_sentences(frame, metrics.BEST_GAP_LOSS, "the best-epoch gap")),
        ("p", note),
        ("table", pd.DataFrame(rows, columns=columns)),
    ]


def bands_section(frame: pd.DataFrame) -> list[Block]:
    """Gap and val AUPRC per (width band, dropout band): mean over seeds with its CI."""
    head: Block = ("h2", "Gap and val AUPRC by width and dropout band (mean over seeds, 95% CI)")
    done = usable_trials(frame)
    rows = []
    for (wb, db), cell in done.groupby(
        [done["width"].map(width_band), done["dropout"].map(dropout_band)]
    ):
        complete = cell[cell["state"] == TrialState.COMPLETE.name]["number"]
        cis = [
            ci_text(mean_ci(list(per_seed(frame, list(numbers), key).values())), show)
            if len(numbers)
            else "—"
            for numbers, key, show in (
                (complete, metrics.FINAL_GAP_LOSS, "signed"),
                (cell["number"], metrics.BEST_GAP_LOSS, "signed"),
                (cell["number"], metrics.BEST_VAL_AUPRC, "fmt"),
            )
        ]
        rows.append((wb, db, len(cell), *cis))
    if not rows:
        return [head, ("p", "No trial with a summary yet.")]
    order = band_order([b for r in rows for b in r[:2]])
    rows.sort(key=lambda r: (order.index(r[0]), order.index(r[1])))
    columns = [
        "width",
        "dropout",
        "trials",
        f"{metrics.FINAL_GAP_LOSS} (complete)",
        metrics.BEST_GAP_LOSS,
        metrics.BEST_VAL_AUPRC,
    ]
    return [head, ("table", pd.DataFrame(rows, columns=columns))]
