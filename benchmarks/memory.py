"""Issue 5 part 6: peak resident memory of one training process on the 285k-row set.

Runs ``python -m droplab.cli train data.rows=285000 ...`` as a child process and reads its
peak RSS from the kernel (``os.wait4`` returns the child's own ``ru_maxrss``, the per-child
form of ``getrusage(RUSAGE_CHILDREN)``). Cases: width 256 without tracking, and width 1024
(the widest of the search space) with MLflow tracking on (it imports and writes MLflow, as a
study worker does), each ``--repeats`` times; the figure is the largest peak seen.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

import common

TARGET_GB = 1.5


def peak_rss_gb(overrides: list[str]) -> float:
    """Peak RSS of one ``droplab train`` process, in GB (10^9 bytes)."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [common.PYTHON, "-m", "droplab.cli", "train", *overrides, f"paths.runs={tmp}"]
        proc = subprocess.Popen(
            argv,
            cwd=common.REPO,
            env=common.child_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}")
    return usage.ru_maxrss * 1024 / 1e9  # Linux reports KiB


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--rows", type=int, default=285_000)
    p.add_argument("--epochs", type=int, default=2)
    args = common.parse(p)
    if args.tiny:
        args.rows, args.epochs, args.repeats = 3000, 1, 1
    base = [f"data.rows={args.rows}", f"train.epochs={args.epochs}"]
    cases = {
        "width 256, tracking off": [*base, "model.width=256", "tracking.enabled=false"],
        "width 1024, tracking on": [*base, "model.width=1024", "tracking.enabled=true"],
    }
    if args.tiny:
        del cases["width 1024, tracking on"]
    peaks: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, overrides in cases.items():
            peaks[name].append(peak_rss_gb(overrides))
    rows = []
    for name, values in peaks.items():
        worst = max(values)
        rows.append(
            [
                f"droplab train, {args.rows} rows, {name}",
                f"{common.median(values):.2f} GB",
                f"**{worst:.2f} GB**",
                f"<= {TARGET_GB} GB: {common.verdict(worst <= TARGET_GB)}",
            ]
        )
    title = f"Memory: peak RSS of one process, {args.repeats} runs each"
    text = common.table(title, ["process", "median peak", "largest peak", "target"], rows)
    common.finish(args, "memory", text, {"peaks_gb": peaks, "args": vars(args)})


if __name__ == "__main__":
    main()
