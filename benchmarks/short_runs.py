"""Issue 17 item 5: whole short runs, from the shell prompt back to the shell prompt.

Measures whole processes (imports, config, data, the fit, MLflow, the exit), each in a fresh
temporary ``paths.runs`` so that every tracked run creates its MLflow store as a first run does:

* ``droplab train`` (tracking on, the default SQLite store) and ``droplab train
  tracking.enabled=false`` against ``python benchmarks/plain_loop.py`` (the same data and the
  same fit in a hand-written loop) at ``--rows`` x ``--epochs``, each width; target: droplab
  with tracking on <= 1.25x the loop (median of paired ratios);
* a 1-epoch ``--small-rows`` ``droplab train`` with tracking on: fresh store (target <= 4 s),
  and again into the store the previous run left (reported);
* ``droplab --help``, ``droplab config`` and a refused ``droplab train model.width=0`` (exit 2):
  target < 1 s each.

Wall seconds are the figures; the CPU seconds (user + sys of the child) are printed beside them,
since on a shared machine they move less than wall time does.
"""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import common

RATIO_TARGET = 1.25
SMALL_TARGET_S = 4.0
QUICK_TARGET_S = 1.0
SMALL_FRESH = "train 1 epoch, fresh store"
SMALL_EXISTING = "train 1 epoch, existing store"
CPU: dict[str, list[float]] = {}  # CPU seconds of each timed variant, beside its wall seconds


def run_child(argv: Sequence[str], expect: int = 0) -> tuple[float, float]:
    """Wall and CPU (user + sys) seconds of a child process; raises on another exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        list(argv),
        cwd=common.REPO,
        env=common.child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != expect:
        raise RuntimeError(
            f"{' '.join(argv)} exited {done.returncode}, expected {expect}: "
            f"{done.stderr[-2000:]!r}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def variant(name: str, argv: Callable[[], Sequence[str]], expect: int = 0) -> Callable[[], float]:
    """A timed variant for :func:`common.interleaved`; its CPU seconds go to ``CPU[name]``."""

    def timed() -> float:
        wall, cpu = run_child(argv(), expect)
        CPU.setdefault(name, []).append(cpu)
        return wall

    return timed


def droplab_cmd(*args: str) -> list[str]:
    return [common.PYTHON, "-m", "droplab.cli", *args]


def fresh_runs(root: str) -> Callable[[], str]:
    """A new, empty ``paths.runs`` under ``root`` at each call."""
    return lambda: tempfile.mkdtemp(prefix="runs-", dir=root)


def whole_runs(args: Any, width: int, root: str) -> dict[str, Any]:
    """droplab train (tracking on and off) against the plain loop, whole processes."""
    sizes = [f"data.rows={args.rows}", f"model.width={width}", f"train.epochs={args.epochs}"]
    runs = fresh_runs(root)
    plain = [common.PYTHON, str(common.REPO / "benchmarks" / "plain_loop.py"), *sizes]
    names = [f"w{width} tracked", f"w{width} untracked", f"w{width} plain"]
    seconds = common.interleaved(
        {
            names[0]: variant(
                names[0], lambda: droplab_cmd("train", *sizes, f"paths.runs={runs()}")
            ),
            names[1]: variant(
                names[1],
                lambda: droplab_cmd(
                    "train", *sizes, "tracking.enabled=false", f"paths.runs={runs()}"
                ),
            ),
            names[2]: variant(names[2], lambda: plain),
        },
        args.repeats,
        quiet=not args.no_wait,
        warmup=not args.tiny,  # a smoke run (CI) times nothing worth warming up for
    )
    out: dict[str, Any] = {"width": width, "seconds": seconds}
    out["median"] = {k: common.median(v) for k, v in seconds.items()}
    out["cpu_median"] = {k: common.median(CPU[k][-args.repeats :]) for k in names}
    for name in names[:2]:
        ratios = common.paired_ratios(seconds[name], seconds[names[2]])
        out.setdefault("ratio", {})[name] = common.median(ratios)
    return out


def small_and_quick(args: Any, root: str) -> dict[str, Any]:
    """The 1-epoch small train (fresh store; a store that exists) and the quick commands."""
    runs = fresh_runs(root)
    existing = os.path.join(root, "existing")  # made by an untimed run first

    def small(where: str) -> list[str]:
        return droplab_cmd(
            "train", f"data.rows={args.small_rows}", "train.epochs=1", f"paths.runs={where}"
        )

    plans: dict[str, tuple[Callable[[], Sequence[str]], int]] = {
        SMALL_FRESH: (lambda: small(runs()), 0),
        SMALL_EXISTING: (lambda: small(existing), 0),
        "droplab --help": (lambda: droplab_cmd("--help"), 0),
        "droplab config": (lambda: droplab_cmd("config"), 0),
        "refusal: train model.width=0": (lambda: droplab_cmd("train", "model.width=0"), 2),
    }
    if args.tiny:  # a smoke run warms up nothing but the store the existing-store run needs
        run_child(small(existing))
    seconds = common.interleaved(
        {name: variant(name, argv, expect) for name, (argv, expect) in plans.items()},
        args.repeats,
        quiet=not args.no_wait,
        warmup=not args.tiny,
    )
    return {
        "seconds": seconds,
        "median": {k: common.median(v) for k, v in seconds.items()},
        "cpu_median": {k: common.median(CPU[k][-args.repeats :]) for k in seconds},
    }


def rows_of(whole: list[dict[str, Any]], quick: dict[str, Any], args: Any) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for w in whole:
        m, cpu = w["median"], w["cpu_median"]
        plain = f"w{w['width']} plain"
        for name in (f"w{w['width']} tracked", f"w{w['width']} untracked"):
            ratio = w["ratio"][name]
            tracked = name.endswith(" tracked")
            rows.append(
                [
                    f"droplab train, {args.rows} rows x {args.epochs} epoch(s), width {w['width']}"
                    + ("" if tracked else ", tracking off"),
                    f"{m[name]:.2f} s (cpu {cpu[name]:.2f})",
                    f"plain loop {m[plain]:.2f} s (cpu {cpu[plain]:.2f})",
                    f"**{ratio:.3f}**" + (f" (<= {RATIO_TARGET})" if tracked else ""),
                    common.verdict(ratio <= RATIO_TARGET) if tracked else "(reported)",
                ]
            )
    for name, target in (
        (SMALL_FRESH, SMALL_TARGET_S),
        (SMALL_EXISTING, None),
        ("droplab --help", QUICK_TARGET_S),
        ("droplab config", QUICK_TARGET_S),
        ("refusal: train model.width=0", QUICK_TARGET_S),
    ):
        seconds, cpu = quick["median"][name], quick["cpu_median"][name]
        label = name.replace("train 1 epoch", f"droplab train, {args.small_rows} rows x 1 epoch")
        rows.append(
            [
                label,
                f"{seconds:.2f} s (cpu {cpu:.2f})",
                "-",
                f"**{seconds:.2f} s**" + (f" (<= {target} s)" if target else ""),
                common.verdict(seconds <= target) if target else "(reported)",
            ]
        )
    return rows


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--widths", type=int, nargs="+", default=[32, 256])
    p.add_argument("--small-rows", type=int, default=2000)
    args = common.parse(p)
    if args.tiny:
        args.rows, args.epochs, args.repeats, args.widths = 3000, 1, 1, [32]
    with tempfile.TemporaryDirectory(prefix="droplab-short-") as root:
        whole = [whole_runs(args, width, root) for width in args.widths]
        quick = small_and_quick(args, root)
    header = ["measure", "droplab (cpu: user + sys)", "against", "figure", "target"]
    title = (
        f"Whole short runs: whole processes, a fresh MLflow store each, median of {args.repeats}"
        f" ({os.cpu_count()} cores)"
    )
    text = common.table(title, header, rows_of(whole, quick, args))
    text += "\nratios are medians of paired runs (repeat i over repeat i of the plain loop)\n"
    common.finish(args, "short_runs", text, {"whole": whole, "quick": quick, "args": vars(args)})


if __name__ == "__main__":
    main()
