"""Issue 17 item 6: the stackable-width cap, re-measured with bfloat16.

A seeded study trial trains ``--members`` seeds of one shape. On CPU they train as one stacked
model up to ``STACK_MAX_WIDTH`` (float32 only: the stacked kernels are bit-exact to ``fit`` in
float32, and no bfloat16 stack is), else in lockstep (one epoch of each member in turn), which
also takes every bfloat16 group. This script times, per width and precision, the members
trained one by one with ``fit``, in lockstep, and (float32) stacked, on the same prepared data,
interleaved, and checks each way's histories equal the one-by-one fits' bit for bit.

    python benchmarks/stack_cap.py                     # widths 64-841, 32 and bf16, 3 repeats
    python benchmarks/stack_cap.py --widths 256 512 --precisions 32
    python benchmarks/stack_cap.py --tiny              # seconds: a smoke run
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import common

from droplab.config import Config, load_config
from droplab.data.splits import Dataset, prepare
from droplab.fit.stack.grouping import STACK_MAX_WIDTH, can_stack
from droplab.fit.stack.lockstep import fit_lockstep
from droplab.fit.stack.members import fit_members
from droplab.fit.trainer import fit, resolve_precision


def members(args: Any, width: int, precision: str) -> list[Config]:
    """``--members`` seeds of one trial's shape (dropout 0.5, the given width and precision)."""
    base = [
        f"data.rows={args.rows}",
        f"model.width={width}",
        "model.dropout=0.5",
        f"train.epochs={args.epochs}",
        f"train.threads={args.threads}",
        f"train.precision={precision}",
        "train.device=cpu",
        "tracking.enabled=false",
    ]
    return [load_config(None, [*base, f"seed={s}"]) for s in range(args.members)]


def measure(args: Any, width: int, precision: str) -> dict[str, Any]:
    cfgs = members(args, width, precision)
    data: list[Dataset | None] = [prepare(c.data, c.seed) for c in cfgs]
    results: dict[str, list[Sequence[Any]]] = {"one by one": [], "lockstep": [], "stacked": []}
    variants = {
        "one by one": common.timed(
            lambda: [fit(c, d) for c, d in zip(cfgs, data, strict=True)], results["one by one"]
        ),
        "lockstep": common.timed(lambda: fit_lockstep(cfgs, data=data), results["lockstep"]),
    }
    if can_stack(cfgs):  # float32 (bfloat16 has no exact stack)
        stacked = results["stacked"]
        variants["stacked"] = common.timed(lambda: fit_members(cfgs, data=data), stacked)
    seconds = common.interleaved(variants, args.repeats, quiet=not args.no_wait)
    alone = [r.history for r in results["one by one"][0]]
    row: dict[str, Any] = {
        "width": width,
        "precision": resolve_precision(cfgs[0]),
        "identical": all(
            [r.history for r in results[name][0]] == alone
            for name in variants
            if name != "one by one"
        ),
        # fit_members trains one by one where no stacked kernel is exact on this machine
        "stacked_members": results["stacked"][0][0].stacked if results["stacked"] else 1,
    }
    for name in variants:
        row[f"{name}_s"] = seconds[name]
        ratios = common.paired_ratios(seconds["one by one"], seconds[name])
        row[f"{name}_speedup"] = common.median(ratios)
    return row


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 384, 512, 841])
    p.add_argument("--precisions", nargs="+", default=["32", "bf16-mixed"])
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--members", type=int, default=3, help="seeds of one trial")
    p.add_argument("--threads", type=int, default=2, help="torch threads (a 1-worker study's)")
    p.set_defaults(repeats=3)
    args = common.parse(p)
    if args.tiny:
        args.widths, args.rows, args.epochs, args.repeats = [32, 64], 2000, 1, 1
    rows = [measure(args, w, prec) for prec in args.precisions for w in args.widths]

    def cell(r: dict[str, Any], name: str) -> str:
        if f"{name}_s" not in r:
            return "- (no exact stack)" if name == "stacked" else "-"
        if name == "stacked" and r["stacked_members"] == 1:
            return "- (probes: one by one)"
        return f"{common.median(r[f'{name}_s']):.2f} s ({r[f'{name}_speedup']:.2f}x)"

    header = ["precision", "width", f"{args.members} x fit", "lockstep", "stacked"]
    header += [f"stacked by default (<= {STACK_MAX_WIDTH})", "identical histories"]
    table_rows = [
        [r["precision"], r["width"], f"{common.median(r['one by one_s']):.2f} s"]
        + [cell(r, "lockstep"), cell(r, "stacked")]
        + ["yes" if r["stacked_members"] > 1 and r["width"] <= STACK_MAX_WIDTH else "no"]
        + ["yes" if r["identical"] else "NO"]
        for r in rows
    ]
    title = (
        f"Stackable-width cap: {args.members} seeds, {args.rows} rows x {args.epochs} epochs, "
        f"{args.threads} threads (median of {args.repeats}; speed-up over one by one)"
    )
    common.finish(args, "stack_cap", common.table(title, header, table_rows), {"runs": rows})


if __name__ == "__main__":
    main()
