"""``make bench``: run every benchmark of issue 5 and collect one results file.

Each script runs in its own process (so one's imports and allocator do not bias another),
prints its Markdown table, and writes its figures as JSON under ``--out``; this entry joins
the tables, with the machine and versions, into ``<out>/results.md``. The defaults take hours
on 2 cores (``peers`` alone an estimated 1.5-2 h); ``--repeats 3`` or ``--only overhead
memory`` take less, ``--tiny`` seconds per script (what CI runs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import common

SCRIPTS = (
    "overhead",
    "bookkeeping",
    "workers",
    "pruning",
    "memory",
    "vectorized",
    "compare_vectorized",
    "seeds_in_studies",
    "arithmetic",
    "short_runs",
    "peers",
    "stack_cap",
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--only", nargs="+", choices=SCRIPTS, default=list(SCRIPTS))
    p.add_argument("--tiny", action="store_true", help="seconds-long smoke run of each script")
    p.add_argument("--repeats", type=int, default=None, help="runs per variant (default 5)")
    p.add_argument("--out", type=Path, default=common.REPO / "runs" / "bench")
    p.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    p.add_argument("--patience", type=float, default=None, help="seconds to wait for quiet")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in args.only:
        argv = [sys.executable, str(Path(__file__).with_name(f"{name}.py"))]
        argv += ["--json", str(args.out / f"{name}.json")]
        argv += ["--tiny"] * args.tiny + ["--no-wait"] * args.no_wait
        argv += ["--repeats", str(args.repeats)] if args.repeats else []
        argv += ["--patience", str(args.patience)] if args.patience is not None else []
        print(f"== {name} ==", flush=True)
        start = time.perf_counter()
        if subprocess.run(argv, cwd=common.REPO).returncode != 0:
            failed.append(name)
        print(f"({name}: {time.perf_counter() - start:.0f} s)\n", flush=True)
    m = common.machine()
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        "",
    ]
    for name in args.only:
        path = args.out / f"{name}.json"
        if path.exists() and name not in failed:
            lines.append(json.loads(path.read_text())["table"])
    (args.out / "results.md").write_text("\n".join(lines))
    print(f"results: {args.out / 'results.md'}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
