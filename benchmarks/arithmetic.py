"""Issue 17.1: the main study against the machine's arithmetic limit, and where the rest goes.

1. GEMM peak: a large square product (float32, and bfloat16 where the CPU multiplies it
   natively) and the main study's own layer shapes (a 512-row batch times ``width x width``),
   at the study's thread count; median of ``--repeats`` timings of 20 products each.
2. The main study (``experiments/fraud_dropout_width.yaml``, tracking off, a fresh store) as a
   whole, once per setting (dropout masks from torch or PCG64, ``model.dropout_rng``; float32,
   and ``train.precision=auto`` where the CPU multiplies bfloat16 natively): its FLOPs
   counted from what it trained -- every epoch of every seed of every trial, pruned ones too:
   the training pass (forward + backward = 3x the forward's multiply-adds) over the training
   split and the eval-mode pass over training and validation splits -- divided by its wall
   time, as a fraction of the float32 peak.
3. A profile of one wide fit (width 841, 3 epochs; ``torch.profiler``, self CPU time by op),
   with each mask generator: the matrix products, the elementwise kernels, the optimizer,
   dropout's draws, the rest.

    python benchmarks/arithmetic.py --json runs/bench/arithmetic.json
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import common
import torch

from droplab.config import load_config
from droplab.config.schema import Config
from droplab.data.splits import prepare
from droplab.fit.trainer import configure_threads, fit, native_cpu_bf16, thread_count
from droplab.study import run as study_run
from droplab.study import storage

EXPERIMENT = "experiments/fraud_dropout_width.yaml"
WIDTHS = (64, 128, 256, 512, 841, 1024)
TINY = [
    "data.rows=1500",
    "train.epochs=2",
    "study.n_trials=2",
    "study.seeds=null",
    "study.baselines=false",
]


def gflops(rows: int, inner: int, cols: int, dtype: torch.dtype, repeats: int) -> float:
    """GFLOP/s of ``(rows x inner) @ (inner x cols)`` in ``dtype``: median of ``repeats``."""
    a = torch.randn(rows, inner).to(dtype)
    b = torch.randn(inner, cols).to(dtype)
    for _ in range(3):
        a @ b
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(20):
            a @ b
        rates.append(20 * 2 * rows * inner * cols / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def multiply_adds_per_row(cfg: Config, n_features: int) -> int:
    """The forward pass's multiply-adds for one row (biases and activations not counted)."""
    w, depth = cfg.model.width, cfg.model.depth
    return n_features * w + (depth - 1) * w * w + w * 1


def study_flops(cfg: Config) -> tuple[float, int, dict[str, int]]:
    """FLOPs the finished study trained and evaluated, its seed-epochs, and its trial states."""
    study = study_run.open_study(cfg, storage.check_storage(cfg))
    data = prepare(cfg.data, cfg.seed)
    n_train, n_val = len(data.x_train), len(data.x_val)
    seeds = len(cfg.study.seeds or (cfg.seed,))
    total, seed_epochs, states = 0.0, 0, {"COMPLETE": 0, "PRUNED": 0}
    for trial in study.trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
        width = int(trial.params.get("model.width", cfg.model.width))
        shaped = cfg.model_copy(update={"model": cfg.model.model_copy(update={"width": width})})
        per_row = multiply_adds_per_row(shaped, data.n_features)
        epochs = len(trial.intermediate_values) * seeds
        seed_epochs += epochs
        total += epochs * 2 * per_row * (3 * n_train + n_train + n_val)
    return total, seed_epochs, states


def run_study(overrides: Sequence[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(EXPERIMENT, [*overrides, "tracking.enabled=false", f"paths.runs={tmp}"])
        start = time.perf_counter()
        study_run.run(cfg)
        seconds = time.perf_counter() - start
        flops, seed_epochs, states = study_flops(cfg)
        best = study_run.open_study(cfg, storage.check_storage(cfg)).best_trial
    return {
        "seconds": seconds,
        "flops": flops,
        "seed_epochs": seed_epochs,
        "states": states,
        "best_value": best.value,
        "best_params": dict(best.params),
    }


def profile_wide(overrides: Sequence[str], epochs: int) -> list[tuple[str, float]]:
    """Self CPU time share of the top ops of one wide fit, and its seconds (``total``)."""
    cfg = load_config(
        EXPERIMENT,
        [*overrides, "model.width=841", "model.dropout=0.5", f"train.epochs={epochs}"],
    )
    fit(cfg)  # warm-up: lazy imports, allocator
    start = time.perf_counter()
    fit(cfg)
    seconds = time.perf_counter() - start
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fit(cfg)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:10]
    return [("total (s, unprofiled)", seconds)] + [
        (e.key, 100 * e.self_cpu_time_total / total) for e in top
    ]


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--set", nargs="*", default=[], help="extra key=value overrides")
    args = common.parse(p)
    overrides = [*(TINY if args.tiny else []), *args.set]
    threads = thread_count(load_config(EXPERIMENT, overrides))
    configure_threads(threads)
    repeats = 1 if args.tiny else args.repeats
    big = 256 if args.tiny else 2048
    dtypes = [torch.float32] + ([torch.bfloat16] if native_cpu_bf16() else [])
    with common.quiet_slot(not args.no_wait):
        peak = {str(d): gflops(big, big, big, d, repeats) for d in dtypes}
        shapes = {
            str(d): {
                w: gflops(512, w, w, d, repeats) for w in (WIDTHS[:2] if args.tiny else WIDTHS)
            }
            for d in dtypes
        }
    settings = [("torch", "32"), ("pcg64", "32")]
    settings += [("pcg64", "auto")] if native_cpu_bf16() else []
    if args.tiny:
        settings = settings[1:2]
    studies = {}
    for rng, precision in settings:
        with common.quiet_slot(not args.no_wait):
            studies[f"dropout_rng={rng}, precision={precision}"] = run_study(
                [*overrides, f"model.dropout_rng={rng}", f"train.precision={precision}"]
            )
    profiles = {}
    for rng in ("pcg64",) if args.tiny else ("torch", "pcg64"):
        with common.quiet_slot(not args.no_wait):
            profiles[rng] = profile_wide(
                [*overrides, "tracking.enabled=false", f"model.dropout_rng={rng}"],
                1 if args.tiny else 3,
            )
    fp32 = peak[str(torch.float32)]
    rows = [
        [f"GEMM {big}^3, {threads} threads, {d.removeprefix('torch.')}", f"{g:.0f} GFLOP/s", "-"]
        for d, g in peak.items()
    ]
    for d, by_width in shapes.items():
        listed = ", ".join(f"w={w}: {g:.0f}" for w, g in by_width.items())
        rows.append([f"512 x w x w, {d.removeprefix('torch.')}", f"GFLOP/s {listed}", "-"])
    for setting, s in studies.items():
        rate = s["flops"] / s["seconds"] / 1e9
        rows.append(
            [
                f"main study, {setting}: {s['seconds']:.0f} s, "
                f"{s['seed_epochs']} seed-epochs, {s['states']['COMPLETE']} complete / "
                f"{s['states']['PRUNED']} pruned, best {s['best_value']:.4f}",
                f"{s['flops'] / 1e12:.2f} TFLOP in {s['seconds']:.0f} s = {rate:.1f} GFLOP/s",
                f"**{100 * rate / fp32:.0f}%** of the float32 peak",
            ]
        )
    text = common.table(
        "Against the arithmetic limit" + (" (tiny: a smoke run)" if args.tiny else ""),
        ["measure", "figure", "fraction"],
        rows,
    )
    for rng, top in profiles.items():
        (_, seconds), *ops = top
        text += common.table(
            f"Where a wide fit's time goes (width 841, p = 0.5, dropout_rng={rng}: "
            f"{seconds:.2f} s; self CPU time by op)",
            ["op", "share"],
            [[name, f"{share:.1f}%"] for name, share in ops],
        )
    figures = {"peak": peak, "shapes": shapes, "studies": studies, "profile": profiles}
    common.finish(args, "arithmetic", text, figures)


if __name__ == "__main__":
    main()
