"""Shared helpers of the benchmark scripts: flags, a quiet machine, medians, tables, JSON.

Every script prints a Markdown table and, with ``--json PATH``, writes its figures for
``benchmarks/run.py`` to collect. ``--tiny`` shrinks a script to seconds (CI runs that).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
PACKAGES = ("torch", "pytorch-lightning", "torchmetrics", "optuna", "mlflow", "numpy")
MAX_LOAD = 1.5  # other people's tests share the 2 cores; timings under load are noise


def parser(description: str) -> argparse.ArgumentParser:
    """The flags every benchmark takes."""
    p = argparse.ArgumentParser(description=description.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="seconds-long smoke run (CI)")
    p.add_argument("--repeats", type=int, default=5, help="runs per variant (median of these)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    return p


def wait_for_quiet(max_load: float = MAX_LOAD, patience_s: float = 600.0) -> float:
    """Wait until the 1-minute load average is below ``max_load``; returns the load seen.

    Gives up after ``patience_s`` (the figure is then taken under load, and says so).
    """
    deadline = time.monotonic() + patience_s
    load = os.getloadavg()[0]
    while load > max_load and time.monotonic() < deadline:
        time.sleep(10)
        load = os.getloadavg()[0]
    return load


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def interleaved(
    variants: dict[str, Callable[[], float]], repeats: int, quiet: bool = True
) -> dict[str, list[float]]:
    """Run each variant ``repeats`` times, alternating them (and rotating their order) so
    that drift in the machine's load hits every variant alike; returns the seconds of each."""
    names = list(variants)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        if quiet:
            wait_for_quiet()
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds[name].append(variants[name]())
    return seconds


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
    print(text, flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"name": name, "tiny": args.tiny, "machine": machine(), **figures}
        payload["table"] = text
        args.json.write_text(json.dumps(payload, indent=2, default=str))
