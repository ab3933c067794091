"""Issue 17 item 4: droplab side by side with what users would run instead.

Three tools run the main study (``experiments/fraud_dropout_width.yaml`` with
``study.seeds=null``: one seed a trial, which is what the peers do; 20 trials of 20 epochs,
batch 512, dropout in [0, 0.8], width in [16, 1024] log, TPE, median pruning from trial 5 and
epoch 5, the dropout-0 controls at widths 16, 128 and 1024 enqueued first), each as a whole
process in a fresh directory, in rotating order:

- ``droplab``: ``droplab study`` with one worker and the defaults;
- ``lightning_optuna`` (peer a, ``peers/lightning_optuna.py``): Optuna + a LightningModule fed
  by ``DataLoader(TensorDataset)``, a Lightning pruning callback, MLflow parent and child runs;
- ``ray_tune`` (peer b, ``peers/ray_tune.py``): Ray Tune, OptunaSearch + ASHA, 2 concurrent
  trials x 1 CPU, ``MLflowLoggerCallback``, in its own virtualenv (``--ray-venv``, created on
  demand with torch 2.13.0 first, then ``ray[tune]``, optuna at droplab's version, mlflow and
  pandas; Ray is never a droplab dependency).

Data: ``droplab data synth`` exports the synthetic rows (the experiment's seed, rows, fraud
rate and label noise) to a CSV that droplab's study reads (``data.source=csv``); the driver
splits and scales that CSV with droplab's own code and exports the train and val splits to a
``.npz`` the peers read, so all three train on the same rows, split and scaling.

Variants:

- ``defaults``: each tool as configured above;
- ``best``: bf16 mixed precision (peers: Lightning ``precision='bf16-mixed'``, Ray
  ``torch.autocast``; droplab ``train.precision=auto``, dropped with a printed reason
  if this droplab's config refuses the key) and, for droplab, ``study.workers=auto`` (2 workers
  at full size on 2 cores, 1 at the reduced size; Ray runs 2 trials at once in every variant;
  the Lightning peer has no such setting);
- ``equal``: the same work everywhere: a random sampler with a fixed seed (the same points for
  every tool, checked), no pruning, no controls, and the peers also evaluate the training split
  in eval mode each epoch, as droplab does for its honest gap.

Per tool: wall time of the whole process, trials complete / pruned, epochs trained, best val
AUPRC, peak RSS (the largest process, from ``os.wait4``, and the sum over the process tree,
sampled twice a second: Ray runs a dozen processes), whether the honest gap is logged, and
the peer / droplab wall ratio (median of ratios of runs taken side by side). Full size, 3
repeats by default (estimated, not yet timed: 30-40 minutes a repeat of the three variants on
2 idle cores; the first run also installs Ray, a few minutes)::

    .venv/bin/python benchmarks/peers.py --json runs/bench/peers.json

``--reduced`` runs the reduced size, 8 trials x 8 epochs, where each tool's fixed costs
(start-up, stores, droplab's report and best model) weigh most.

``--tiny`` (CI) runs 3 trials of 2 epochs on 2,000 rows, the ``defaults`` and ``equal``
variants (``--variants`` for others), and skips Ray unless its virtualenv already exists.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import common
import numpy as np
import optuna

from droplab.config import Config
from droplab.config.load import load_config, with_overrides
from droplab.config.paths import study_name, study_storage
from droplab.config.schema import ConfigError
from droplab.data.splits import prepare
from droplab.fit.cores import worker_count
from droplab.study.storage import open_storage

EXPERIMENT = str(common.REPO / "experiments" / "fraud_dropout_width.yaml")
PEERS = Path(__file__).resolve().parent / "peers"
RAY_VENV = common.REPO / "runs" / "bench" / "ray-venv"
RAY_PACKAGES = ("ray[tune]", f"optuna=={metadata.version('optuna')}", "mlflow", "pandas")
VARIANTS = ("defaults", "best", "equal")
TOOLS = ("droplab", "lightning_optuna", "ray_tune")
TINY = ["data.rows=2000", "train.epochs=2", "study.n_trials=3"]
REDUCED = ["study.n_trials=8", "train.epochs=8"]  # where fixed costs weigh most
BF16 = "train.precision=auto"  # droplab's best: bfloat16 where it pays (wide layers, native bf16)
SPACE = {"model.dropout": (0.0, 0.8, False), "model.width": (16, 1024, True)}


@dataclass
class Outcome:
    """What one tool's study did: counts, epochs, best value, the points it tried."""

    seconds: float
    rss_gb: float
    tree_rss_gb: float
    complete: int
    pruned: int
    failed: int
    epochs: int
    best: float | None
    honest_gap: bool
    points: list[tuple[float, int]]


def check_space(cfg: Config) -> None:
    """The peers hard-code the main study's space; stop if the experiment moved it."""
    space = {key: (p.low, p.high, p.log) for key, p in cfg.study.space.items()}
    if space != SPACE:
        raise SystemExit(f"{EXPERIMENT}: study.space is {space}, the peers search {SPACE}")


def export_data(cfg: Config, folder: Path) -> tuple[Path, Path]:
    """``droplab data synth`` to a CSV, and droplab's train/val split of it to a ``.npz``."""
    csv, npz = folder / "fraud.csv", folder / "splits.npz"
    argv = [common.PYTHON, "-m", "droplab.cli", "data", "synth", "--rows", str(cfg.data.rows)]
    argv += ["--out", str(csv), "--seed", str(cfg.seed)]
    argv += ["--fraud-rate", str(cfg.data.fraud_rate), "--label-noise", str(cfg.data.label_noise)]
    common.time_process(argv, common.child_env())
    data = prepare(load_config(EXPERIMENT, csv_source(csv)).data, cfg.seed)
    arrays = {k: getattr(data, k).numpy() for k in ("x_train", "y_train", "x_val", "y_val")}
    np.savez(npz, **arrays)
    return csv, npz


def csv_source(csv: Path) -> list[str]:
    return ["data.source=csv", f"data.path={csv}", "data.target=Class"]


def ray_python(venv: Path, create: bool) -> tuple[Path | None, str]:
    """The Ray virtualenv's python (created when ``create``), or None and why not."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import ray.tune, optuna, mlflow, pandas, torch"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python, ""
    if not create:
        return None, f"skipped: no Ray virtualenv at {venv} (--tiny does not install Ray)"
    print(f"installing Ray into {venv} (minutes, once)", flush=True)
    base = shutil.which("python3.11") or sys.executable
    pip = [str(venv / "bin" / "pip"), "install", "--quiet"]
    for argv in (
        [base, "-m", "venv", str(venv)],
        [*pip, "torch==2.13.0"],  # first and pinned: the CPU wheel; unpinned pulls CUDA
        [*pip, *RAY_PACKAGES],  # optuna at droplab's version: the same random points
    ):
        subprocess.run(argv, check=True)
    return python, ""


def droplab_argv(variant: str, sizes: list[str], csv: Path, runs: Path, bf16: bool) -> list[str]:
    argv = [common.PYTHON, "-m", "droplab.cli", "study", EXPERIMENT, "study.seeds=null"]
    argv += [*sizes, *csv_source(csv), f"paths.runs={runs}"]
    if variant == "best":  # droplab's own choice of workers for this size (2 at full size)
        argv += ["study.workers=auto"] + [BF16] * bf16
    if variant == "equal":
        argv += ["study.sampler=random", "study.pruner=none", "study.baselines=false"]
    return argv


def peer_argv(
    python: Path, tool: str, variant: str, cfg: Config, npz: Path, root: Path
) -> list[str]:
    s = cfg.study
    argv = [str(python), str(PEERS / f"{tool}.py"), "--data", str(npz), "--root", str(root)]
    seed = cfg.seed if s.sampler_seed is None else s.sampler_seed  # droplab's sampler seed
    argv += ["--out", str(root / "results.json"), "--seed", str(seed)]
    argv += ["--trials", str(s.n_trials), "--epochs", str(cfg.train.epochs)]
    argv += ["--batch-size", str(cfg.train.batch_size), "--lr", str(cfg.train.lr)]
    argv += ["--depth", str(cfg.model.depth), "--startup-trials", str(s.startup_trials)]
    argv += ["--warmup-epochs", str(s.warmup_epochs)]
    if variant == "equal":
        return argv + ["--sampler", "random", "--pruner", "none", "--honest-gap"]
    return argv + ["--controls"] + ["--bf16"] * (variant == "best")


def droplab_outcome(argv: list[str], times: tuple[float, float, float]) -> Outcome:
    """Read the finished study back from its Optuna storage."""
    cfg = load_config(EXPERIMENT, argv[argv.index(EXPERIMENT) + 1 :])
    study = optuna.load_study(study_name=study_name(cfg), storage=open_storage(study_storage(cfg)))
    states = [t.state for t in study.trials]
    epochs = sum(
        len(t.intermediate_values) or cfg.train.epochs * (t.state.name == "COMPLETE")
        for t in study.trials
    )
    best = study.best_value if optuna.trial.TrialState.COMPLETE in states else None
    return Outcome(
        *times,
        complete=states.count(optuna.trial.TrialState.COMPLETE),
        pruned=states.count(optuna.trial.TrialState.PRUNED),
        failed=states.count(optuna.trial.TrialState.FAIL),
        epochs=epochs,
        best=best,
        honest_gap=True,
        points=[(t.params["model.dropout"], t.params["model.width"]) for t in study.trials],
    )


def peer_outcome(path: Path, times: tuple[float, float, float]) -> Outcome:
    """Read a peer's results file (``peers/shared.write_results``)."""
    record = json.loads(path.read_text())
    trials = record["trials"]
    states = [t["state"] for t in trials]
    values = [t["best_val_auprc"] for t in trials if t["state"] == "COMPLETE"]
    return Outcome(
        *times,
        complete=states.count("COMPLETE"),
        pruned=states.count("PRUNED"),
        failed=states.count("FAIL"),
        epochs=sum(t["epochs"] for t in trials),
        best=max(values) if values else None,
        honest_gap=record["honest_gap"],
        points=[(t["params"]["model.dropout"], t["params"]["model.width"]) for t in trials],
    )


class Bench:
    """Runs the tools of one variant and keeps what each run did."""

    def __init__(self, cfg: Config, sizes: list[str], csv: Path, npz: Path) -> None:
        self.cfg, self.sizes, self.csv, self.npz = cfg, sizes, csv, npz
        self.outcomes: dict[str, dict[str, list[Outcome]]] = {}
        self.ray: Path | None = None
        self.bf16 = True
        self.auto_workers = worker_count(with_overrides(cfg, {"study.workers": "auto"}))

    def runner(self, variant: str, tool: str) -> Any:
        """A callable for :func:`common.interleaved`: one run, its wall seconds."""

        def run() -> float:
            with tempfile.TemporaryDirectory(prefix=f"peers-{tool}-") as tmp:
                root = Path(tmp)
                if tool == "droplab":
                    argv = droplab_argv(variant, self.sizes, self.csv, root, self.bf16)
                    times = common.run_measured(argv, clean_env(common.child_env()), root / "log")
                    outcome = droplab_outcome(argv, times)
                else:
                    python = self.ray if tool == "ray_tune" else Path(common.PYTHON)
                    assert python is not None
                    argv = peer_argv(python, tool, variant, self.cfg, self.npz, root)
                    env = clean_env(dict(os.environ) if tool == "ray_tune" else common.child_env())
                    times = common.run_measured(argv, env, root / "log")
                    outcome = peer_outcome(root / "results.json", times)
            self.outcomes.setdefault(variant, {}).setdefault(tool, []).append(outcome)
            return outcome.seconds

        return run


def clean_env(env: dict[str, str]) -> dict[str, str]:
    """No inherited tracking or storage: every run writes to its own fresh directory."""
    for key in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE", "VIRTUAL_ENV"):
        env.pop(key, None)
    return env


def bf16_refusal(sizes: list[str]) -> str | None:
    """Why this droplab's config refuses ``train.precision``, or None if it takes it."""
    try:
        load_config(EXPERIMENT, ["study.seeds=null", *sizes, BF16])
    except ConfigError as exc:
        if "train.precision" not in str(exc):
            raise
        return str(exc)
    return None


def gb(value: float) -> str:
    return f"{value:.2f} GB"


def rows_of(variant: str, runs: dict[str, list[Outcome]], bench: Bench) -> list[list[str]]:
    """One table row per tool: medians over the repeats (peak RSS: the largest)."""
    rows = []
    base = [o.seconds for o in runs.get("droplab", [])]
    for tool, outs in runs.items():
        best = [o.best for o in outs if o.best is not None]
        ratio = "-"
        if tool != "droplab" and base:
            paired = common.paired_ratios([o.seconds for o in outs], base)
            ratio = f"**{common.median(paired):.2f}x**"
        name = tool
        if tool == "droplab" and variant == "best":
            name += f" ({bench.auto_workers} workers" + (
                ", bf16)" if bench.bf16 else "; bf16 refused)"
            )
        rows.append(
            [
                name,
                f"{common.median([o.seconds for o in outs]):.1f} s",
                f"{common.median([o.complete for o in outs]):.0f} / "
                f"{common.median([o.pruned for o in outs]):.0f}"
                + (
                    f" ({max(o.failed for o in outs)} failed)"
                    if any(o.failed for o in outs)
                    else ""
                ),
                f"{common.median([o.epochs for o in outs]):.0f}",
                f"{common.median(best):.4f}" if best else "-",
                gb(max(o.rss_gb for o in outs)),
                gb(max(o.tree_rss_gb for o in outs)),
                "yes" if outs[0].honest_gap else "no",
                ratio,
            ]
        )
    return rows


HEADER = [
    "tool",
    "wall (median)",
    "trials complete / pruned",
    "epochs trained",
    "best val AUPRC",
    "peak RSS, largest process",
    "peak RSS, process tree",
    "honest gap logged",
    "wall / droplab's",
]


def same_points(runs: dict[str, list[Outcome]]) -> str:
    """Whether every tool tried the same (dropout, width) points, in any order."""
    sets = {t: sorted((round(d, 12), w) for d, w in outs[0].points) for t, outs in runs.items()}
    first = next(iter(sets.values()))
    return "yes" if all(s == first for s in sets.values()) else f"NO: {sets}"


def main() -> None:
    p = common.parser(__doc__ or "")
    p.set_defaults(repeats=3)
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=None, help="default: all")
    p.add_argument("--ray-venv", type=Path, default=RAY_VENV, help="created if missing")
    p.add_argument("--no-ray", action="store_true", help="leave the Ray peer out")
    p.add_argument(
        "--reduced", action="store_true", help="8 trials x 8 epochs (the fixed costs' share)"
    )
    args = common.parse(p)
    sizes = TINY if args.tiny else REDUCED if args.reduced else []
    if args.tiny:
        args.repeats = 1
    if args.variants is None:  # tiny (CI): droplab's 2-worker "best" run is the slow one
        args.variants = ["defaults", "equal"] if args.tiny else list(VARIANTS)
    cfg = load_config(EXPERIMENT, ["study.seeds=null", *sizes])
    check_space(cfg)
    tools = list(TOOLS)
    reasons: list[str] = []
    with tempfile.TemporaryDirectory(prefix="peers-data-") as tmp:
        csv, npz = export_data(cfg, Path(tmp))
        bench = Bench(cfg, sizes, csv, npz)
        ray_reason = "skipped: --no-ray"
        if not args.no_ray:
            bench.ray, ray_reason = ray_python(args.ray_venv, create=not args.tiny)
        if bench.ray is None:
            tools.remove("ray_tune")
            reasons.append(f"ray_tune: {ray_reason}")
            print(f"ray_tune: {ray_reason}", flush=True)
        refusal = bf16_refusal(sizes) if "best" in args.variants else None
        if refusal:
            bench.bf16 = False
            reasons.append(f"droplab bf16: override dropped, the config refuses it: {refusal}")
            print(reasons[-1], flush=True)
        seconds = {}
        for variant in args.variants:
            runners = {tool: bench.runner(variant, tool) for tool in tools}
            seconds[variant] = common.interleaved(runners, args.repeats, not args.no_wait)
    text = ""
    for variant in args.variants:
        runs = bench.outcomes[variant]
        title = (
            f"Peers, {variant}: {cfg.study.n_trials} trials x {cfg.train.epochs} epochs, "
            f"{cfg.data.rows} rows, batch {cfg.train.batch_size}, one seed a trial, "
            f"median of {args.repeats}"
        )
        text += common.table(title, HEADER, rows_of(variant, runs, bench)) + "\n"
        if variant == "equal":
            text += f"same points in every tool: {same_points(runs)}\n\n"
    text += "".join(f"{r}\n" for r in reasons)
    outcomes = {
        v: {t: [asdict(o) for o in outs] for t, outs in r.items()}
        for v, r in bench.outcomes.items()
    }
    figures = {"seconds": seconds, "outcomes": outcomes, "skipped": reasons, "args": vars(args)}
    common.finish(args, "peers", text, figures)


if __name__ == "__main__":
    main()
