"""Issue 5 part 5: epochs saved by pruning, and what it costs in the best val AUPRC.

Runs the study of ``experiments/fraud_dropout_width.yaml`` (20 trials x 20 epochs, TPE,
dropout-0 controls enqueued; widths capped at ``--max-width`` 256 by default to fit the bench's
budget, 1024 is the experiment's) with ``study.pruner`` = none, median, hyperband and
successive_halving, for each of ``--seeds`` sampler seeds (``study.sampler_seed``; the same
seed and trial count for every pruner). Epochs are counted from the trials' intermediate
values (one report per epoch) and, independently, by counting the epoch hooks each fit
calls; the unpruned study reports nothing, so its count comes from the hooks alone (every
trial runs all its epochs). MLflow tracking is off: it changes neither count.
The best val AUPRC is the study's best objective value (``best/val_auprc``).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import common
from optuna.trial import TrialState

from droplab.config import load_config
from droplab.study import run as study_run
from droplab.study import storage
from droplab.tracking import runs

EPOCH_TARGET = 0.50
AUPRC_TARGET = 0.02
EXPERIMENT = "experiments/fraud_dropout_width.yaml"
PRUNERS = ("none", "median", "hyperband", "successive_halving")
TINY = [
    "data.rows=1500",
    "data.fraud_rate=0.05",
    "train.epochs=4",
    "train.threads=1",
    "study.n_trials=4",
    "study.warmup_epochs=1",
    "study.startup_trials=1",
    "study.space={model.dropout: {type: float, low: 0.0, high: 0.8}, "
    "model.width: {type: int, low: 8, high: 32, log: true}}",
]


def run_study(pruner: str, seed: int, overrides: Sequence[str]) -> dict[str, Any]:
    """One study; returns its epoch counts, best value and wall time."""
    hook_epochs = [0]
    original = runs.fit

    def counting_fit(cfg: Any, data: Any = None, hooks: Sequence[Any] = ()) -> Any:
        def count(epoch: int, values: Any) -> None:
            hook_epochs[0] += 1

        return original(cfg, data, hooks=[count, *hooks])

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            EXPERIMENT,
            [
                *overrides,
                f"study.pruner={pruner}",
                f"study.sampler_seed={seed}",
                "tracking.enabled=false",
                f"paths.runs={tmp}",
            ],
        )
        runs.fit = counting_fit
        start = time.perf_counter()
        try:
            study_run.run(cfg)
            seconds = time.perf_counter() - start
        finally:
            runs.fit = original
        loaded = study_run.open_study(cfg, storage.check_storage(cfg))
        trials = loaded.get_trials(deepcopy=False)
        reported = sum(len(t.intermediate_values) for t in trials)
        states = [t.state for t in trials]
        best = loaded.best_value
    return {
        "pruner": pruner,
        "seed": seed,
        "epochs": hook_epochs[0],
        "reported_epochs": reported,
        "pruned": states.count(TrialState.PRUNED),
        "complete": states.count(TrialState.COMPLETE),
        "best": best,
        "seconds": seconds,
    }


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--max-width", type=int, default=256, help="the experiment's: 1024")
    p.add_argument("--pruners", nargs="+", default=list(PRUNERS))
    p.add_argument("--set", nargs="*", default=[], help="extra key=value overrides")
    p.add_argument(
        "--reuse-none",
        type=Path,
        default=None,
        help="take the unpruned studies from this earlier --json (same seeds and space): "
        "they are deterministic and the longest part of the run",
    )
    args = common.parse(p)
    if args.tiny:
        args.seeds = [0]
    space = (
        "study.space={model.dropout: {type: float, low: 0.0, high: 0.8}, "
        f"model.width: {{type: int, low: 16, high: {args.max_width}, log: true}}}}"
    )
    # one seed a trial, as measured before study.seeds: the hook count patches runs.fit
    overrides = [space, "study.seeds=null", *(TINY if args.tiny else []), *args.set]
    pruners = ["none", *(pr for pr in args.pruners if pr != "none")]
    reused = []
    if args.reuse_none is not None:
        earlier = json.loads(args.reuse_none.read_text())["runs"]
        reused = [r for r in earlier if r["pruner"] == "none" and r["seed"] in args.seeds]
        pruners = [pr for pr in pruners if pr != "none"]
    runs = reused + [run_study(pr, seed, overrides) for seed in args.seeds for pr in pruners]
    pruners = ["none", *pruners] if reused else pruners
    base = {r["seed"]: r for r in runs if r["pruner"] == "none"}
    rows, summary = [], {}
    for pruner in pruners:
        mine = [r for r in runs if r["pruner"] == pruner]
        share = common.median([r["epochs"] / base[r["seed"]]["epochs"] for r in mine])
        loss = common.median([1 - r["best"] / base[r["seed"]]["best"] for r in mine])
        ok = pruner == "none" or (share <= EPOCH_TARGET and loss <= AUPRC_TARGET)
        summary[pruner] = {"epoch_share": share, "auprc_loss": loss, "met": ok}
        rows.append(
            [
                pruner,
                " / ".join(str(r["epochs"]) for r in mine),
                f"{share:.0%}",
                " / ".join(f"{r['best']:.4f}" for r in mine),
                f"{loss:+.1%}",
                " / ".join(str(r["pruned"]) for r in mine),
                f"{common.median([r['seconds'] for r in mine]):.0f} s",
                "-" if pruner == "none" else common.verdict(ok),
            ]
        )
    header = [
        "pruner",
        "epochs (per seed)",
        "epochs vs none (median)",
        "best val AUPRC (per seed)",
        "AUPRC lost vs none (median)",
        "pruned trials",
        "study time (median; indicative, not a target)",
        f"target (<= {EPOCH_TARGET:.0%} epochs, <= {AUPRC_TARGET:.0%} AUPRC)",
    ]
    title = (
        f"Pruning: fraud_dropout_width, widths 16-{args.max_width}, sampler seeds {args.seeds}"
        ", the same seed and trial count for every pruner"
        + (f", with {' '.join(args.set)}" if args.set else "")
    )
    text = common.table(title, header, rows)
    mismatch = [r for r in runs if r["pruner"] != "none" and r["epochs"] != r["reported_epochs"]]
    text += f"\nepochs from hooks == epochs from intermediate values: {not mismatch}\n"
    common.finish(args, "pruning", text, {"runs": runs, "summary": summary})


if __name__ == "__main__":
    main()
