"""Issue 5 part 4: trials per hour with 2 worker processes against 1, on this machine.

Times the whole command ``python -m droplab.cli study experiments/fraud_dropout_width.yaml``
with ``study.workers=1`` and ``study.workers=2``, both on a journal storage, MLflow tracking on,
``train.threads=0`` (cores / workers threads each: 2 for one worker, 1 each for two), a fresh
``paths.runs`` per run. The search space is dropout only, at one width, without pruning, so
every trial costs the same in both variants (the grid sampler would give identical trials,
but droplab's ask/tell loop crashes when a grid is exhausted: see the README).

Two rates are reported: the whole command (start-up, MLflow store, worker spawn, summary and
report included) and the trial phase (first trial start to last trial end, read from the
Optuna storage), the rate a long study converges to. The variants run interleaved; speed-ups
are medians of per-repeat ratios.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import common
import optuna

from droplab.study.storage import open_storage

TARGET = 1.6
EXPERIMENT = "experiments/fraud_dropout_width.yaml"


SPACE = "study.space={model.dropout: {type: float, low: 0.0, high: 0.8}}"


def one_study(workers: int, overrides: list[str]) -> tuple[float, float]:
    """Seconds of the whole command and of its trial phase."""
    with tempfile.TemporaryDirectory() as tmp:
        journal = str(Path(tmp) / "optuna.journal")
        argv = [common.PYTHON, "-m", "droplab.cli", "study", EXPERIMENT, "study.seeds=null"]
        argv += overrides  # one seed a trial, as the table measured before study.seeds
        argv += [f"study.workers={workers}", f"study.storage={journal}", f"paths.runs={tmp}"]
        whole = common.time_process(argv, common.child_env())
        name = Path(EXPERIMENT).stem
        trials = optuna.load_study(study_name=name, storage=open_storage(journal)).trials
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    return whole, (max(ends) - min(starts)).total_seconds()


def measure(args: Any, overrides: list[str]) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {"whole": {}, "trials": {}}
    for r in range(args.repeats):
        with common.quiet_slot(not args.no_wait):
            for workers in (1, 2) if r % 2 == 0 else (2, 1):
                key = f"{workers} worker{'s' if workers > 1 else ''}"
                whole, phase = one_study(workers, overrides)
                out["whole"].setdefault(key, []).append(whole)
                out["trials"].setdefault(key, []).append(phase)
    return out


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--width", type=int, default=128, help="the space's geometric middle")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--epochs", type=int, default=10)
    args = common.parse(p)
    if args.tiny:
        args.trials, args.width, args.rows, args.epochs, args.repeats = 4, 16, 1500, 2, 1
    n = args.trials
    overrides = [
        SPACE,
        f"study.n_trials={n}",
        "study.pruner=none",
        f"model.width={args.width}",
        f"data.rows={args.rows}",
        f"train.epochs={args.epochs}",
        "train.threads=0",
    ]
    if args.tiny:  # no MLflow store to create: seconds, not a minute
        overrides += ["data.fraud_rate=0.05", "tracking.enabled=false"]
    start = time.perf_counter()
    seconds = measure(args, overrides)
    rows, speedups = [], {}
    for phase, label in (("whole", "whole command"), ("trials", "trial phase")):
        s = seconds[phase]
        per_hour = {k: [n * 3600 / x for x in v] for k, v in s.items()}
        speedups[phase] = common.median(common.paired_ratios(s["1 worker"], s["2 workers"]))
        for k in s:
            rows.append(
                [
                    f"{label}, {k}",
                    f"{common.median(s[k]):.1f} s",
                    f"{common.median(per_hour[k]):.0f}",
                    "",
                ]
            )
        ok = common.verdict(speedups[phase] >= TARGET)
        rows.append(
            [
                f"**{label}: 2 vs 1 workers**",
                "",
                f"**{speedups[phase]:.2f}x**",
                f">= {TARGET}x: {ok}",
            ]
        )
    title = (
        f"Workers: {n} trials (width {args.width}, dropout searched), {args.rows} rows, "
        f"{args.epochs} epochs, journal storage, tracking on, median of {args.repeats}"
    )
    text = common.table(title, ["variant", "wall time", "trials per hour", "target"], rows)
    text += f"\n(benchmark took {time.perf_counter() - start:.0f} s)\n"
    figures = {"seconds": seconds, "speedups": speedups, "args": vars(args)}
    common.finish(args, "workers", text, figures)


if __name__ == "__main__":
    main()
