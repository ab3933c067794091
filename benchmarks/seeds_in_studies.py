"""Issue 13: do seed-aware studies choose better configurations, and at what cost in time?

Runs the main study (``experiments/fraud_dropout_width.yaml``) ``--studies`` times with
different sampler seeds (``study.sampler_seed``), once with one seed per trial
(``study.seeds=null``, seed 0: today's study) and once with three (``study.seeds=[0, 1,
2]``), the same number of trials. Each study's chosen configuration (its best trial's
dropout and width) is then trained on ``--fresh`` fresh seeds that no study saw (seeds
1000, 1001, ...; a seed fixes the split, the initial weights, the masks and the batch
order), and scored by its mean
``best/val_auprc`` and ``final/gap_loss`` over them. A study design is better when its choices
score higher on fresh seeds *and* vary less from one study to the next (a one-seed study
partly ranks luck). Target: the 3-seed studies' choices have a lower spread across studies and
no worse mean, at a wall time of at most 1.6x the 1-seed studies'. MLflow tracking is off in
both (it changes neither choice); the fresh-seed fits train in lockstep as a study's seeds do.

Full run (about 5 x (2 + 5) min of studies plus 10 x 10 fresh fits on 2 idle cores):

    python benchmarks/seeds_in_studies.py --json runs/bench/seeds_in_studies.json
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import common

from droplab import metrics
from droplab.config import load_config
from droplab.config.load import with_overrides
from droplab.config.schema import Config
from droplab.fit.stack.grouping import can_stack
from droplab.fit.stack.lockstep import fit_lockstep
from droplab.fit.stack.members import fit_members
from droplab.study import run as study_run
from droplab.study import storage

EXPERIMENT = "experiments/fraud_dropout_width.yaml"
WALL_TARGET = 1.6
VARIANTS = {"1 seed": "study.seeds=null", "3 seeds": "study.seeds=[0, 1, 2]"}
FRESH_BASE = 1000
TINY = [
    "data.rows=1500",
    "data.fraud_rate=0.05",
    "train.epochs=3",
    "train.threads=1",
    "study.n_trials=3",
    "study.warmup_epochs=1",
    "study.startup_trials=1",
    "study.space={model.dropout: {type: float, low: 0.0, high: 0.8}, "
    "model.width: {type: int, low: 8, high: 32, log: true}}",
]


def run_study(variant: str, sampler_seed: int, overrides: Sequence[str]) -> dict[str, Any]:
    """One study of the experiment; its wall time and the chosen configuration."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            EXPERIMENT,
            [
                *overrides,
                VARIANTS[variant],
                f"study.sampler_seed={sampler_seed}",
                "tracking.enabled=false",
                f"paths.runs={tmp}",
            ],
        )
        start = time.perf_counter()
        study_run.run(cfg)
        seconds = time.perf_counter() - start
        best = study_run.open_study(cfg, storage.check_storage(cfg)).best_trial
    return {
        "variant": variant,
        "sampler_seed": sampler_seed,
        "seconds": seconds,
        "params": dict(best.params),
        "value": best.value,
    }


def fresh_scores(cfg: Config, params: dict[str, Any], n: int) -> dict[str, float]:
    """The configuration ``params`` on ``n`` fresh seeds: mean best val AUPRC and final gap."""
    chosen = with_overrides(cfg, params)
    cfgs = [with_overrides(chosen, {"seed": FRESH_BASE + i}) for i in range(n)]
    # float32 members stack; bfloat16 ones (train.precision=auto at wide widths) cannot, and
    # train in lockstep instead -- each equal to its own fit either way
    results = fit_members(cfgs) if can_stack(cfgs) else fit_lockstep(cfgs)
    return {
        key: statistics.fmean(r.summary[key] for r in results)
        for key in (metrics.BEST_VAL_AUPRC, metrics.FINAL_GAP_LOSS)
    }


def spread(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--studies", type=int, default=5, help="sampler seeds per variant")
    p.add_argument("--fresh", type=int, default=10, help="fresh seeds per chosen config")
    p.add_argument("--set", nargs="*", default=[], help="extra key=value overrides")
    args = common.parse(p)
    if args.tiny:
        args.studies, args.fresh = 2, 3
    overrides = [*(TINY if args.tiny else []), *args.set]
    runs = [
        run_study(variant, k, overrides) for k in range(args.studies) for variant in VARIANTS
    ]  # interleaved, so drift in the machine's load hits both variants alike
    base = load_config(EXPERIMENT, [*overrides, "tracking.enabled=false"])
    for r in runs:
        r["fresh"] = fresh_scores(base, r["params"], args.fresh)
    rows, summary = [], {}
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant]
        auprc = [r["fresh"][metrics.BEST_VAL_AUPRC] for r in mine]
        gap = [r["fresh"][metrics.FINAL_GAP_LOSS] for r in mine]
        seconds = [r["seconds"] for r in mine]
        summary[variant] = {
            "auprc_mean": statistics.fmean(auprc),
            "auprc_spread": spread(auprc),
            "gap_mean": statistics.fmean(gap),
            "gap_spread": spread(gap),
            "seconds": common.median(seconds),
        }
        s = summary[variant]
        chosen = "; ".join(
            f"p={r['params'].get('model.dropout', float('nan')):.2f} "
            f"w={r['params'].get('model.width', '-')}"
            for r in mine
        )
        rows.append(
            [
                variant,
                chosen,
                f"{s['auprc_mean']:.4f}",
                f"{s['auprc_spread']:.4f}",
                f"{s['gap_mean']:+.4f}",
                f"{s['gap_spread']:.4f}",
                f"{s['seconds']:.0f} s",
            ]
        )
    one, three = summary["1 seed"], summary["3 seeds"]
    ratio = common.median(
        common.paired_ratios(
            [r["seconds"] for r in runs if r["variant"] == "3 seeds"],
            [r["seconds"] for r in runs if r["variant"] == "1 seed"],
        )
    )
    met = (
        three["auprc_spread"] < one["auprc_spread"]
        and three["auprc_mean"] >= one["auprc_mean"]
        and ratio <= WALL_TARGET
    )
    header = [
        "seeds per trial",
        "chosen configurations (one per study)",
        f"fresh {metrics.BEST_VAL_AUPRC} (mean over studies)",
        "its spread (sd over studies)",
        f"fresh {metrics.FINAL_GAP_LOSS} (mean)",
        "its spread (sd)",
        "study wall time (median)",
    ]
    title = (
        f"Seeds in studies: {args.studies} studies per variant (sampler seeds 0-"
        f"{args.studies - 1}), each choice retrained on {args.fresh} fresh seeds"
        + (f", with {' '.join(args.set)}" if args.set else "")
        + (" (tiny: a smoke run, not a finding)" if args.tiny else "")
    )
    text = common.table(title, header, rows)
    text += (
        f"\nwall time 3 seeds / 1 seed (median of paired ratios): {ratio:.2f}x; target: lower "
        f"spread, no worse mean, <= {WALL_TARGET}x: {common.verdict(met)}\n"
    )
    figures = {"runs": runs, "summary": summary, "wall_ratio": ratio, "met": met}
    common.finish(args, "seeds_in_studies", text, figures)


if __name__ == "__main__":
    main()
