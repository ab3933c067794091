"""Issue 5 parts 1, 2 and 8: droplab's cost on top of the arithmetic.

Measures, on ``data.rows`` synthetic rows x 30 features (285k like the public credit-card set):

* fit time of ``droplab.training.fit(cfg, data)`` against ``plain_loop.plain_fit`` (the same
  work in a hand-written loop; their histories are checked to be identical) at each width;
* fit time of the conventional pattern (``conventional.py``: Lightning + DataLoader +
  per-step ``self.log`` + progress bar) at width 32: the speed-up droplab gives;
* whole-process time: ``python -m droplab.cli train ... tracking.enabled=false`` against
  ``python benchmarks/plain_loop.py ...`` (imports, data preparation and the fit).

The data is prepared once and shared by the in-process variants; they run interleaved, in a
rotating order, ``--repeats`` times, and each ratio is the median of per-repeat ratios.
``--device cuda`` (or ``auto`` with a GPU) measures the same on the GPU (``train.device=cuda``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from typing import Any

import common
import torch
from conventional import conventional_fit
from plain_loop import plain_fit

from droplab.config import Config, load_config
from droplab.data.splits import Dataset, prepare
from droplab.fit.trainer import fit, thread_count

FLOOR_TARGET = 1.10
SPEEDUP_TARGET = 3.0


def overrides(args: Any, width: int, device: str) -> list[str]:
    return [
        f"data.rows={args.rows}",
        f"model.width={width}",
        f"train.epochs={args.epochs}",
        f"train.device={device}",
        f"train.threads={args.threads}",
    ]


def config(args: Any, width: int, device: str) -> Config:
    return load_config(None, [*overrides(args, width, device), "tracking.enabled=false"])


def timed(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def same_history(cfg: Config, data: Dataset) -> bool:
    """The plain loop does droplab's work: equal per-epoch metrics, bit for bit (whether or
    not droplab's first epoch starts at the generator's first permutation)."""
    ours = fit(cfg, data).history
    for skip in (True, False):
        plain = plain_fit(cfg, data, thread_count(cfg), skip_first_permutation=skip)
        if all(o[k] == p[k] for o, p in zip(ours, plain, strict=True) for k in p):
            return True
    return False


def in_process(args: Any, width: int, device: str, data: Dataset) -> dict[str, Any]:
    cfg = config(args, width, device)
    threads = thread_count(cfg)
    cuda = device == "cuda"
    variants: dict[str, Callable[[], float]] = {
        "droplab": lambda: timed(lambda: fit(cfg, data)),
        "plain": lambda: timed(lambda: plain_fit(cfg, data, threads)),
    }
    if width in args.conventional_widths:
        variants["conventional"] = lambda: timed(
            lambda: conventional_fit(cfg, data, threads, cuda)
        )
    seconds = common.interleaved(variants, args.repeats, warmup=True)
    out: dict[str, Any] = {"width": width, "device": device, "threads": threads}
    out["identical_history"] = same_history(cfg, data)
    out["seconds"] = seconds
    out["median"] = {k: common.median(v) for k, v in seconds.items()}
    out["fastest"] = {k: min(v) for k, v in seconds.items()}
    out["ratio"] = common.median(common.paired_ratios(seconds["droplab"], seconds["plain"]))
    if "conventional" in seconds:
        ratios = common.paired_ratios(seconds["conventional"], seconds["droplab"])
        out["speedup"] = common.median(ratios)
    return out


def whole_process(args: Any, width: int, device: str) -> dict[str, Any]:
    args_ = overrides(args, width, device)
    with tempfile.TemporaryDirectory() as tmp:
        droplab_cmd = [common.PYTHON, "-m", "droplab.cli", "train", *args_]
        droplab_cmd += ["tracking.enabled=false", f"paths.runs={tmp}"]
        plain_cmd = [common.PYTHON, str(common.REPO / "benchmarks" / "plain_loop.py"), *args_]
        env = common.child_env()
        seconds = common.interleaved(
            {
                "droplab": lambda: common.time_process(droplab_cmd, env),
                "plain": lambda: common.time_process(plain_cmd, env),
            },
            args.process_repeats,
        )
    ratio = common.median(common.paired_ratios(seconds["droplab"], seconds["plain"]))
    medians = {k: common.median(v) for k, v in seconds.items()}
    return {"width": width, "seconds": seconds, "median": medians, "ratio": ratio}


def rows_of(fits: list[dict[str, Any]], procs: list[dict[str, Any]]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for f in fits:
        m = f["median"]
        ratio_ok = f["ratio"] <= FLOOR_TARGET
        rows.append(
            [
                f"fit, width {f['width']}, {f['device']}",
                f"{m['droplab']:.2f} s",
                f"{m['plain']:.2f} s",
                f"**{f['ratio']:.3f}** (<= {FLOOR_TARGET})",
                common.verdict(ratio_ok),
            ]
        )
        if "speedup" in f:
            rows.append(
                [
                    f"conventional Lightning, width {f['width']}, {f['device']}",
                    f"{m['droplab']:.2f} s",
                    f"{m['conventional']:.2f} s (conventional)",
                    f"**{f['speedup']:.2f}x** faster (>= {SPEEDUP_TARGET}x)",
                    common.verdict(f["speedup"] >= SPEEDUP_TARGET),
                ]
            )
    for p in procs:
        m = p["median"]
        rows.append(
            [
                f"whole process, width {p['width']}",
                f"{m['droplab']:.2f} s",
                f"{m['plain']:.2f} s",
                f"{p['ratio']:.3f}",
                "(reported)",
            ]
        )
    return rows


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--rows", type=int, default=285_000)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--widths", type=int, nargs="+", default=[32, 256])
    p.add_argument("--conventional-widths", type=int, nargs="*", default=[32])
    p.add_argument("--process-repeats", type=int, default=None, help="default: --repeats")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=0, help="train.threads (0: droplab's default)")
    args = common.parse(p)
    if args.tiny:
        args.rows, args.epochs, args.repeats, args.widths = 3000, 2, 1, [32]
    args.process_repeats = args.process_repeats or args.repeats
    device = "cuda" if args.device == "cuda" or torch.cuda.is_available() else "cpu"
    if args.device == "cpu":
        device = "cpu"
    cfg = config(args, args.widths[0], device)
    data = prepare(cfg.data, cfg.seed).to(device)
    fits = [in_process(args, w, device, data) for w in args.widths]
    procs = [whole_process(args, w, device) for w in args.widths]
    rows = rows_of(fits, procs)
    if device != "cuda":
        rows.append(["fit on GPU", "-", "-", "not measured: no CUDA device on this machine", "-"])
    header = ["measure", "droplab", "plain loop", "ratio (median of paired runs)", "target"]
    title = (
        f"Overhead vs the floor: {args.rows} rows x 30 features, {args.epochs} epochs, "
        f"batch {cfg.train.batch_size}, {fits[0]['threads']} threads, median of {args.repeats}"
    )
    text = common.table(title, header, rows)
    text += "\nper-epoch histories identical to the plain loop: "
    text += ", ".join(f"width {f['width']}: {f['identical_history']}" for f in fits) + "\n"
    common.finish(args, "overhead", text, {"fits": fits, "processes": procs, "args": vars(args)})


if __name__ == "__main__":
    main()
