"""Shared helpers of the benchmark scripts: flags, a quiet machine, medians, tables, JSON.

Every script prints a Markdown table and, with ``--json PATH``, writes its figures for
``benchmarks/run.py`` to collect. ``--tiny`` shrinks a script to seconds (CI runs that).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
PACKAGES = ("torch", "pytorch-lightning", "torchmetrics", "optuna", "mlflow", "numpy")
MAX_LOAD = 1.5  # other people's tests share the 2 cores; timings under load are noise
LOADS: list[float] = []  # the 1-minute load average seen before each timed repeat
PATIENCE_S = 300.0  # how long to wait for a quiet machine before timing anyway
LOCK = Path("/tmp/droplab-bench.lock")  # two benchmarks never time at the same moment


def parser(description: str) -> argparse.ArgumentParser:
    """The flags every benchmark takes."""
    p = argparse.ArgumentParser(description=description.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="seconds-long smoke run (CI)")
    p.add_argument("--repeats", type=int, default=5, help="runs per variant (median of these)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    p.add_argument(
        "--patience", type=float, default=PATIENCE_S, help="seconds to wait for load < 1.5"
    )
    return p


def parse(p: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the flags; ``--no-wait`` and ``--patience`` set how long to wait for quiet."""
    global PATIENCE_S
    args = p.parse_args()
    PATIENCE_S = 0.0 if args.no_wait else args.patience
    if not args.no_wait:  # smoke runs (CI) neither wait nor lock
        hold_machine()
    return args


def wait_for_quiet(max_load: float = MAX_LOAD) -> float:
    """Wait until the 1-minute load average is below ``max_load``; returns the load seen.

    Gives up after ``--patience`` seconds: the figure is then taken under load, and the
    table says so (the loads seen are printed under it).
    """
    deadline = time.monotonic() + PATIENCE_S
    load = os.getloadavg()[0]
    while load > max_load and time.monotonic() < deadline:
        time.sleep(10)
        load = os.getloadavg()[0]
    LOADS.append(load)
    return load


_held: list[Any] = []


def hold_machine() -> None:
    """Take the machine-wide benchmark lock, once, until this process exits: two benchmark
    processes never run at the same time (the second waits for the first)."""
    if not _held:
        handle = open(LOCK, "a")  # kept open (and locked) for the life of the process
        fcntl.flock(handle, fcntl.LOCK_EX)
        _held.append(handle)


@contextlib.contextmanager
def quiet_slot(quiet: bool = True) -> Iterator[None]:
    """If ``quiet``, hold the benchmark lock and wait for a quiet machine: time in here."""
    if quiet:
        hold_machine()
        wait_for_quiet()
    yield


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def interleaved(
    variants: dict[str, Callable[[], float]],
    repeats: int,
    quiet: bool = True,
    warmup: bool = False,
) -> dict[str, list[float]]:
    """Run each variant ``repeats`` times, alternating them (and rotating their order) so
    that drift in the machine's load hits every variant alike; returns the seconds of each.

    ``quiet`` waits for a quiet machine before each repeat (see :func:`wait_for_quiet`);
    ``warmup`` first runs each variant once, untimed (lazy imports, allocator, caches).
    """
    names = list(variants)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    if quiet:
        hold_machine()
    for name in names if warmup else []:
        variants[name]()
    for r in range(repeats):
        with quiet_slot(quiet):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                seconds[name].append(variants[name]())
    return seconds


def timed(run: Callable[[], Any], out: list[Any] | None = None) -> Callable[[], float]:
    """A variant for :func:`interleaved`: the seconds of one call of ``run``; with ``out``,
    its result is kept there (``out[:] = [result]``, the last repeat's)."""

    def once() -> float:
        start = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - start
        if out is not None:
            out[:] = [result]
        return seconds

    return once


def paired_ratios(num: Sequence[float], den: Sequence[float]) -> list[float]:
    """Ratios of runs taken side by side (repeat i of one over repeat i of the other)."""
    return [a / b for a, b in zip(num, den, strict=True)]


def time_process(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of a child process (its output discarded); raises if it fails."""
    start = time.perf_counter()
    done = subprocess.run(
        list(argv), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]!r}")
    return seconds


def child_env(**extra: str) -> dict[str, str]:
    """This environment with ``src`` importable (benchmarks run without installing droplab)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def machine() -> dict[str, Any]:
    """Where the figures were taken: CPU, cores, memory, Python and package versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024**2, 1),
        "python": platform.python_version(),
        "versions": versions,
        "load_at_start": round(os.getloadavg()[0], 2),
    }


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table with a title line."""
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def finish(args: argparse.Namespace, name: str, text: str, figures: dict[str, Any]) -> None:
    """Print the table and write the figures (with the machine) to ``--json``."""
    if LOADS:
        text += (
            f"\nload average before the timed repeats: median {median(LOADS):.2f}, "
            f"max {max(LOADS):.2f} ({os.cpu_count()} cores; waited up to {PATIENCE_S:.0f} s for "
            f"< {MAX_LOAD} before each)\n"
        )
    print(text, flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"name": name, "tiny": args.tiny, "machine": machine(), **figures}
        payload["loads"] = LOADS
        payload["table"] = text
        args.json.write_text(json.dumps(payload, indent=2, default=str))


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += parents.get(p, [])
        with contextlib.suppress(OSError):  # the process ended meanwhile
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1])
    return total * os.sysconf("SC_PAGESIZE")


def run_measured(argv: list[str], env: dict[str, str], log: Path) -> tuple[float, float, float]:
    """Run a child to its end, its output to ``log``; returns its wall seconds and peak RSS
    in GB: of its largest process (``os.wait4``: the child and the descendants it reaped) and
    of its whole process tree (the sum, sampled twice a second: Ray runs a dozen processes).
    Raises if it fails, with the end of its log."""
    peak = [0]
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=out)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                peak[0] = max(peak[0], tree_rss(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{tail}")
    own = usage.ru_maxrss * 1024  # Linux reports KiB
    return seconds, own / 1e9, max(peak[0], own) / 1e9
