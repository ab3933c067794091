"""Issue 17 item 3: the main study with 1 worker, 2 workers and ``study.workers=auto``.

Runs the whole command ``python -m droplab.cli study experiments/fraud_dropout_width.yaml``
(TPE, median pruning, 20 trials, MLflow tracking on, ``train.threads=0``: cores / workers
threads each) as a user would: default storage (SQLite for one worker, the journal file for
several or auto), a fresh ``paths.runs`` per run; once with ``study.seeds=null`` (one seed a
trial) and once with the experiment's 3 seeds. Repeat r uses ``study.sampler_seed=r``, so the
repeats are different studies and the medians do not rest on one lucky search.

Reported per variant: wall time of the whole command, CPU seconds (the command and its
workers), epochs trained (every trial reports each epoch to the pruner), trials complete /
pruned, and the best value. CPU, epochs and trial counts do not depend on the load of the
machine; wall time does. Targets: 2 workers (and auto) never end later than 1 worker in any
repeat, >= 1.2x sooner at the median, at no worse median best value.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import optuna
from optuna.trial import TrialState

from droplab.study.storage import open_storage

TARGET = 1.2
EXPERIMENT = "experiments/fraud_dropout_width.yaml"
VARIANTS = ("1", "2", "auto")
SEEDS = {"one seed": "study.seeds=null", "3 seeds": "study.seeds=[0, 1, 2]"}


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_study(workers: str, overrides: list[str]) -> dict[str, float]:
    """The whole command once: wall and CPU seconds, epochs, trial counts, best value."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [common.PYTHON, "-m", "droplab.cli", "study", EXPERIMENT, *overrides]
        argv += [f"study.workers={workers}", f"paths.runs={tmp}"]
        cpu = _cpu_of_children()
        wall = common.time_process(argv, common.child_env())
        cpu = _cpu_of_children() - cpu
        db = Path(tmp) / "optuna.db"
        url = f"sqlite:///{db}" if db.exists() else str(Path(tmp) / "optuna.journal")
        study = optuna.load_study(study_name=Path(EXPERIMENT).stem, storage=open_storage(url))
        trials = study.get_trials(deepcopy=False)
        best = study.best_value
    return {
        "wall": wall,
        "cpu": cpu,
        "epochs": float(sum(len(t.intermediate_values) for t in trials)),
        "complete": float(sum(t.state == TrialState.COMPLETE for t in trials)),
        "pruned": float(sum(t.state == TrialState.PRUNED for t in trials)),
        "best": best,
    }


def measure(args: Any, overrides: list[str]) -> dict[str, dict[str, list[dict[str, float]]]]:
    """``{seeds label: {workers: [one result per repeat]}}``; variants rotate per repeat."""
    out: dict[str, dict[str, list[dict[str, float]]]] = {}
    for label in args.seed_modes:
        for r in range(args.repeats):
            order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]
            for workers in order:
                with common.quiet_slot(not args.no_wait):
                    runs = [*overrides, SEEDS[label], f"study.sampler_seed={r}"]
                    result = one_study(workers, runs)
                out.setdefault(label, {}).setdefault(workers, []).append(result)
    return out


def rows_of(label: str, runs: dict[str, list[dict[str, float]]]) -> list[list[str]]:
    def med(workers: str, key: str) -> float:
        return common.median([r[key] for r in runs[workers]])

    rows = []
    for workers in VARIANTS:
        rows.append(
            [
                f"{label}, workers={workers}",
                f"{med(workers, 'wall'):.1f} s",
                f"{med(workers, 'cpu'):.0f} s",
                f"{med(workers, 'epochs'):.0f}",
                f"{med(workers, 'complete'):.0f} / {med(workers, 'pruned'):.0f}",
                f"{med(workers, 'best'):.4f}",
                "",
            ]
        )
    one = [r["wall"] for r in runs["1"]]
    for workers in VARIANTS[1:]:
        ratios = common.paired_ratios(one, [r["wall"] for r in runs[workers]])
        speedup = common.median(ratios)
        never_later = min(ratios) >= 1.0
        no_worse = med(workers, "best") >= med("1", "best")
        ok = common.verdict(speedup >= TARGET and never_later and no_worse)
        target = f">= {TARGET}x, never later, best no worse: {ok}"
        rows.append(
            [f"**{label}: {workers} vs 1**", f"**{speedup:.2f}x**", "", "", "", "", target]
        )
    return rows


def main() -> None:
    p = common.parser(__doc__ or "")
    p.set_defaults(repeats=3)  # 18 whole studies at full size
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--seed-modes", nargs="+", choices=list(SEEDS), default=list(SEEDS))
    args = common.parse(p)
    overrides = [f"study.n_trials={args.trials}"]
    if args.tiny:  # seconds, not minutes: small data, few epochs, no MLflow store
        args.trials, args.repeats, args.seed_modes = 6, 1, ["one seed"]
        overrides = [
            "study.n_trials=6",
            "data.rows=1500",
            "data.fraud_rate=0.05",
            "train.epochs=3",
            "study.warmup_epochs=1",
            "study.startup_trials=2",
            "tracking.enabled=false",
        ]
    start = time.perf_counter()
    results = measure(args, [*overrides, "train.threads=0"])
    rows = [row for label, runs in results.items() for row in rows_of(label, runs)]
    title = (
        f"Workers: main study ({args.trials} trials, TPE + median pruning), whole command, "
        f"medians of {args.repeats} (sampler seeds 0..{args.repeats - 1})"
    )
    header = ["variant", "wall", "CPU", "epochs", "complete / pruned", "best value", "target"]
    text = common.table(title, header, rows)
    text += f"\n(benchmark took {time.perf_counter() - start:.0f} s)\n"
    common.finish(args, "workers", text, {"runs": results, "args": vars(args)})


if __name__ == "__main__":
    main()
