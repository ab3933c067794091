"""Peer (b): the same study with Ray Tune: OptunaSearch, the ASHA scheduler, MLflow callback.

What a Ray user writes: a function trainable (a plain PyTorch loop over
``DataLoader(TensorDataset)``, one ``tune.report`` per epoch), ``OptunaSearch`` with TPE,
``ASHAScheduler`` stopping trials early, 2 concurrent trials of 1 CPU each on the 2 cores, and
``MLflowLoggerCallback`` writing one MLflow run per trial, nested under a parent run of the
study (its ``tags``). The trial's value is its best epoch's validation AUPRC (reported each
epoch as ``best_val_auprc``, which both ASHA and Optuna read), droplab's objective.

This runs in its own virtualenv (torch, ``ray[tune]``, optuna, mlflow, pandas; no droplab,
no Lightning, no torchmetrics): ``benchmarks/peers.py`` creates it on demand. The training
loss is the epoch's mean with dropout on and only val is evaluated, so the honest gap is not
logged unless ``--honest-gap`` evaluates the training split in eval mode too.

Run by ``benchmarks/peers.py``; by hand, with the Ray virtualenv's python::

    python benchmarks/peers/ray_tune.py --data SPLITS.npz --out RESULTS.json --root DIR
"""

from __future__ import annotations

import os
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import optuna
import ray
import shared
import torch
import torch.nn.functional as F
from optuna.distributions import FloatDistribution, IntDistribution
from ray import tune
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch
from torch.utils.data import DataLoader, TensorDataset

EXPERIMENT = "peer_ray_tune"
METRIC = "best_val_auprc"
CONCURRENT = 2  # trials at once, 1 CPU each: the 2 cores


def evaluate(model: torch.nn.Module, loader: DataLoader, bf16: bool) -> tuple[float, float]:
    """Loss and AUPRC of a split in eval mode."""
    model.eval()
    logits, labels = [], []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for x, y in loader:
            logits.append(model(x).squeeze(-1).float())
            labels.append(y)
    z, y = torch.cat(logits), torch.cat(labels)
    loss = F.binary_cross_entropy_with_logits(z, y.float())
    return float(loss), shared.average_precision(torch.sigmoid(z), y)


def train_trial(config: dict[str, Any], data_path: str, settings: dict[str, Any]) -> None:
    """One trial: train for ``epochs`` and report the epoch's metrics to Tune each epoch."""
    torch.manual_seed(settings["seed"])
    data = shared.load_splits(Path(data_path))
    model = shared.mlp(
        data["x_train"].shape[1], config["model.width"], settings["depth"],
        config["model.dropout"],
    )  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    size, bf16 = settings["batch_size"], settings["bf16"]
    train_set = TensorDataset(data["x_train"], data["y_train"])
    train = DataLoader(train_set, batch_size=size, shuffle=True)
    val = DataLoader(TensorDataset(data["x_val"], data["y_val"]), batch_size=size)
    best = float("-inf")
    for _ in range(settings["epochs"]):
        model.train()
        losses = []
        for x, y in train:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.binary_cross_entropy_with_logits(model(x).squeeze(-1), y.float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        val_loss, val_auprc = evaluate(model, val, bf16)
        best = max(best, val_auprc)
        metrics = {"train_loss": sum(losses) / len(losses), "val_loss": val_loss}
        metrics.update(val_auprc=val_auprc, best_val_auprc=best)
        if settings["honest_gap"]:
            train_loss, train_auprc = evaluate(model, DataLoader(train_set, size), bf16)
            metrics.update(train_eval_loss=train_loss, train_eval_auprc=train_auprc)
            metrics.update(gap_loss=val_loss - train_loss)
        tune.report(metrics)


def searcher(args: Any) -> OptunaSearch:
    """OptunaSearch over the main study's space (TPE, or random for equal work)."""
    space = {
        "model.dropout": FloatDistribution(*shared.DROPOUT),
        "model.width": IntDistribution(*shared.WIDTH, log=True),
    }
    sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=args.seed)
    if args.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=args.seed)
    controls = [{"model.dropout": 0.0, "model.width": w} for w in shared.CONTROL_WIDTHS]
    return OptunaSearch(
        space,
        metric=METRIC,
        mode="max",
        sampler=sampler,
        points_to_evaluate=controls if args.controls else None,
    )


def main() -> None:
    args = shared.parser(__doc__ or "").parse_args()
    start = time.perf_counter()
    root = args.root.resolve()
    uri = f"sqlite:///{root}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(EXPERIMENT)
    # Ray's workers unpickle the trainable, which refers to ``shared`` by name.
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=CONCURRENT, include_dashboard=False)
    scheduler: TrialScheduler = FIFOScheduler()
    if args.pruner == "on":
        grace = min(args.warmup_epochs, args.epochs)  # ASHA refuses a grace period > max_t
        scheduler = ASHAScheduler(max_t=args.epochs, grace_period=grace)
    settings = {k: getattr(args, k) for k in ("seed", "depth", "lr", "batch_size", "epochs")}
    settings.update(bf16=args.bf16, honest_gap=args.honest_gap)
    trainable = tune.with_parameters(
        train_trial, data_path=str(args.data.resolve()), settings=settings
    )
    with mlflow.start_run(run_name="study") as parent:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            tune_config=tune.TuneConfig(
                metric=METRIC,
                mode="max",
                search_alg=searcher(args),
                scheduler=scheduler,
                num_samples=args.trials,
                max_concurrent_trials=CONCURRENT,
            ),
            run_config=tune.RunConfig(
                name="study",
                storage_path=str(root / "ray_results"),
                callbacks=[
                    MLflowLoggerCallback(
                        tracking_uri=uri,
                        experiment_name=EXPERIMENT,
                        tags={"mlflow.parentRunId": parent.info.run_id},
                        save_artifact=False,
                    )
                ],
            ),
        )
        grid = tuner.fit()
        trials = [trial_record(result, args.epochs) for result in grid]
        values = [t["best_val_auprc"] for t in trials if t["best_val_auprc"] is not None]
        if values:
            mlflow.log_metric(METRIC, max(values))
    ray.shutdown()
    versions = {p: metadata.version(p) for p in ("torch", "ray", "optuna")}
    shared.write_results(
        args.out,
        "ray_tune",
        trials,
        honest_gap=args.honest_gap,
        seconds_inside=time.perf_counter() - start,
        versions=versions,
    )


def trial_record(result: Any, epochs: int) -> dict[str, Any]:
    """A Tune result as the driver's trial record (ASHA's early stops count as pruned)."""
    done = int(result.metrics.get("training_iteration", 0)) if result.metrics else 0
    state = "FAIL" if result.error else "COMPLETE" if done >= epochs else "PRUNED"
    params = {k: result.config[k] for k in ("model.dropout", "model.width")}
    best = result.metrics.get(METRIC) if result.metrics else None
    return {"state": state, "epochs": done, "params": params, "best_val_auprc": best}


if __name__ == "__main__":
    main()
