"""Issue 5 part 7: seed-vectorized training against the same members trained one by one.

Eight members (seeds 0-3 x dropout 0.0 / 0.5) of one shape (width 32 by default) on
``--rows`` synthetic rows: ``droplab.vectorized.fit_members`` trains them as one stacked model,
the baseline runs ``droplab.training.fit`` eight times. Both get the same prepared data (its
preparation is not timed) and do the same work; their histories are checked to be identical
bit for bit. The variants run interleaved in a rotating order, ``--repeats`` times; the
speed-up is the median of the per-repeat ratios.

    python benchmarks/vectorized.py            # 20k rows, 10 epochs, 5 repeats
    python benchmarks/vectorized.py --rows 20000 285000 --json out/vectorized.json
    python benchmarks/vectorized.py --tiny     # seconds: a smoke run
"""

from __future__ import annotations

import argparse
from typing import Any

import common

from droplab.config import Config, load_config
from droplab.data.splits import Dataset, prepare
from droplab.fit.stack.members import fit_members
from droplab.fit.trainer import fit

TARGET = 3.0


def members(rows: int, width: int, epochs: int, threads: int, n: int) -> list[Config]:
    """``n`` configs of one shape: seeds x dropout {0.0, 0.5}."""
    base = [
        f"data.rows={rows}",
        f"model.width={width}",
        f"train.epochs={epochs}",
        f"train.threads={threads}",
        "train.device=cpu",
        "tracking.enabled=false",
    ]
    return [
        load_config(None, [*base, f"seed={i // 2}", f"model.dropout={0.5 * (i % 2)}"])
        for i in range(n)
    ]


def identical(cfgs: list[Config], data: list[Dataset]) -> bool:
    """Every member's history equals its own fit's, bit for bit."""
    stacked = fit_members(cfgs, data=data)
    alone = [fit(c, d) for c, d in zip(cfgs, data, strict=True)]
    return all(s.history == a.history for s, a in zip(stacked, alone, strict=True))


def measure(args: argparse.Namespace, rows: int) -> dict[str, Any]:
    cfgs = members(rows, args.width, args.epochs, args.threads, args.members)
    data = [prepare(c.data, c.seed) for c in cfgs]
    same = identical(cfgs, data)

    def one_by_one() -> list[Any]:
        return [fit(c, d) for c, d in zip(cfgs, data, strict=True)]

    seconds = common.interleaved(
        {
            "sequential": common.timed(one_by_one),
            "stacked": common.timed(lambda: fit_members(cfgs, data=data)),
        },
        args.repeats,
        quiet=not args.no_wait,
        warmup=not args.tiny,
    )
    ratios = common.paired_ratios(seconds["sequential"], seconds["stacked"])
    return {
        "rows": rows,
        "identical": same,
        "sequential_s": seconds["sequential"],
        "stacked_s": seconds["stacked"],
        "speedup": common.median(ratios),
    }


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--rows", type=int, nargs="+", default=[20000])
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch threads of every variant")
    args = p.parse_args()
    if args.tiny:
        args.rows, args.epochs, args.repeats = [3000], 2, 1
    results = [measure(args, rows) for rows in args.rows]
    header = ["rows", "members", "width", "epochs", "threads", "8 x fit (s)", "fit_members (s)"]
    header = [h.replace("8", str(args.members)) for h in header]
    header += ["speed-up", f"target >= {TARGET:g}x", "identical histories"]
    table_rows = [
        [r["rows"], args.members, args.width, args.epochs, args.threads]
        + [f"{common.median(r['sequential_s']):.2f}", f"{common.median(r['stacked_s']):.2f}"]
        + [f"{r['speedup']:.2f}x", common.verdict(r["speedup"] >= TARGET)]
        + ["yes" if r["identical"] else "NO"]
        for r in results
    ]
    title = f"Seed-vectorized training (median of {args.repeats}, CPU)"
    common.finish(args, "vectorized", common.table(title, header, table_rows), {"runs": results})


if __name__ == "__main__":
    main()
