"""Issue 17 item 6: a whole ``droplab compare`` process, ``compare.vectorize`` on against off.

16 members (seeds 0-7 x dropout 0.0 / 0.5) at width 32 on ``--rows`` synthetic rows, 1 thread,
MLflow on (a fresh SQLite store per run): everything a user waits for -- imports, data,
training, the seed runs' logging, statistics and the report. Each variant runs as its own
process, alternated in a rotating order, ``--repeats`` times; the speed-up is the median of
the per-repeat ratios of wall time (CPU time of the child beside it: under load, the steadier
figure). The result tables (``table.csv``, ``table.md`` and ``seeds.csv`` less its run ids) of
every run are checked to be identical.

    python benchmarks/compare_vectorized.py             # 100k rows, 5 epochs, 3 repeats
    python benchmarks/compare_vectorized.py --tiny      # seconds: a smoke run
"""

from __future__ import annotations

import argparse
import csv
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import common

TARGET = 3.0
VARIANTS = {"sequential": "false", "stacked": "true"}


def experiment(args: argparse.Namespace, folder: Path) -> Path:
    """The comparison: dropout 0.5 against its dropout-0 baseline over ``--seeds`` seeds."""
    seeds = ", ".join(str(s) for s in range(args.seeds))
    path = folder / "compare_vectorized.yaml"
    path.write_text(
        "name: compare_vectorized\n"
        f"data: {{rows: {args.rows}}}\n"
        f"model: {{width: {args.width}}}\n"
        f"train: {{epochs: {args.epochs}, threads: {args.threads}, device: cpu}}\n"
        f"compare: {{grid: {{model.dropout: [0.5]}}, seeds: [{seeds}]}}\n"
    )
    return path


def run_once(exp: Path, runs: Path, vectorize: str) -> tuple[float, float]:
    """Wall and CPU seconds of one ``droplab compare`` process on a fresh store."""
    argv = [common.PYTHON, "-m", "droplab.cli", "compare", str(exp)]
    argv += [f"paths.runs={runs}", f"compare.vectorize={vectorize}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        argv, cwd=common.REPO, env=common.child_env(), capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def tables(runs: Path) -> dict[str, list[list[str]]]:
    """The comparison's result tables, run ids left out (each run has its own)."""
    folder = runs / "reports" / "compare_vectorized"
    out = {}
    for name in ("table.csv", "table.md", "seeds.csv"):
        with open(folder / name, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle)) if name.endswith(".csv") else [[handle.read()]]
        if name == "seeds.csv":
            drop = rows[0].index("run_id")
            rows = [row[:drop] + row[drop + 1 :] for row in rows]
        out[name] = rows
    return out


def measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    exp = experiment(args, folder)
    wall: dict[str, list[float]] = {name: [] for name in VARIANTS}
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    seen: list[dict[str, list[list[str]]]] = []
    names = list(VARIANTS)
    for r in range(args.repeats):
        with common.quiet_slot(not args.no_wait):
            for name in names[r % 2 :] + names[: r % 2]:
                runs = folder / f"{name}-{r}"
                seconds, cpu_seconds = run_once(exp, runs, VARIANTS[name])
                wall[name].append(seconds)
                cpu[name].append(cpu_seconds)
                seen.append(tables(runs))
    return {
        "identical": all(t == seen[0] for t in seen),
        "wall_s": wall,
        "cpu_s": cpu,
        "speedup": common.median(common.paired_ratios(wall["sequential"], wall["stacked"])),
        "cpu_speedup": common.median(common.paired_ratios(cpu["sequential"], cpu["stacked"])),
    }


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--rows", type=int, default=100000)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, default=8, help="seeds; members = 2 x seeds")
    p.add_argument("--threads", type=int, default=1, help="torch threads of every process")
    p.set_defaults(repeats=3)
    args = common.parse(p)
    if args.tiny:
        args.rows, args.epochs, args.seeds, args.repeats = 3000, 2, 2, 1
    with tempfile.TemporaryDirectory(prefix="droplab-bench-") as tmp:
        r = measure(args, Path(tmp))
    header = ["rows", "members", "width", "epochs", "threads", "vectorize=false (s)"]
    header += ["vectorize=true (s)", "speed-up (wall)", "speed-up (CPU)"]
    header += [f"target >= {TARGET:g}x", "identical tables"]
    row = [args.rows, 2 * args.seeds, args.width, args.epochs, args.threads]
    row += [f"{common.median(r['wall_s'][name]):.1f}" for name in VARIANTS]
    row += [f"{r['speedup']:.2f}x", f"{r['cpu_speedup']:.2f}x"]
    row += [common.verdict(r["speedup"] >= TARGET), "yes" if r["identical"] else "NO"]
    title = f"Whole compare process, vectorize on vs off (median of {args.repeats}, CPU)"
    common.finish(args, "compare_vectorized", common.table(title, header, [row]), r)


if __name__ == "__main__":
    main()
