"""Peer (a): the study a user writes with Optuna and PyTorch Lightning instead of droplab.

The pattern of Optuna's Lightning example, grown to the main study's job: a LightningModule fed
by ``DataLoader(TensorDataset)``, ``self.log`` on every training step (progress bar on), the
validation metrics as torchmetrics objects, Optuna pruning through a Lightning callback (the
``optuna_integration`` one imports ``lightning.pytorch``; this project uses
``pytorch_lightning``, so it is written here, as a user would), one MLflow parent run per study
and a nested child run per trial that Lightning's ``MLFlowLogger`` writes to (per-epoch
validation metrics, the step loss every ``log_every_n_steps``). TPE and the median pruner, the
study in memory (Optuna's default), one process. The trial's value is its best epoch's
validation AUPRC, droplab's objective.

Training loss is logged with dropout on, and only the validation split is evaluated, so the
honest gap (train in eval mode against val) is not logged unless ``--honest-gap`` adds the
training split as a second validation loader (the driver's "equal work" variant).

Run by ``benchmarks/peers.py``; by hand::

    python benchmarks/peers/lightning_optuna.py --data SPLITS.npz --out RESULTS.json --root DIR
"""

from __future__ import annotations

import time
from importlib import metadata
from typing import Any

import mlflow
import optuna
import pytorch_lightning as pl
import shared
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import MLFlowLogger
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import BinaryAveragePrecision

EXPERIMENT = "peer_lightning_optuna"


class FraudModule(pl.LightningModule):
    """The MLP with a logged training step; validation loader 0 is val, 1 (if any) train."""

    def __init__(self, n_features: int, width: int, depth: int, dropout: float, lr: float):
        super().__init__()
        self.save_hyperparameters()  # MLFlowLogger writes them as the run's params
        self.model = shared.mlp(n_features, width, depth, dropout)
        self.lr = lr
        self.val_auprc = BinaryAveragePrecision()
        self.train_eval_auprc = BinaryAveragePrecision()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).squeeze(-1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.binary_cross_entropy_with_logits(self(x), y.float())
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        logits = self(x).float()
        split = ("val", "train_eval")[dataloader_idx]
        loss = F.binary_cross_entropy_with_logits(logits, y.float())
        self.log(f"{split}_loss", loss, add_dataloader_idx=False)
        auprc = (self.val_auprc, self.train_eval_auprc)[dataloader_idx]
        auprc.update(torch.sigmoid(logits), y)
        self.log(f"{split}_auprc", auprc, add_dataloader_idx=False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class PruningCallback(pl.Callback):
    """``optuna_integration.PyTorchLightningPruningCallback`` for ``pytorch_lightning``:
    report ``monitor`` after each validation (step = epoch, from 1) and prune on request."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = pl_module.current_epoch + 1
        self.trial.report(float(trainer.callback_metrics[self.monitor]), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"Trial was pruned at epoch {epoch}.")


class BestValue(pl.Callback):
    """Keeps the best validation AUPRC and counts epochs (and logs the gap when measured)."""

    def __init__(self) -> None:
        self.best: float | None = None
        self.epochs = 0

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        self.epochs = pl_module.current_epoch + 1
        value = float(metrics["val_auprc"])
        self.best = value if self.best is None else max(self.best, value)
        if "train_eval_loss" in metrics and trainer.logger is not None:
            gap = float(metrics["val_loss"] - metrics["train_eval_loss"])
            trainer.logger.log_metrics({"gap_loss": gap}, step=trainer.global_step)


def objective_fn(args: Any, data: dict[str, torch.Tensor], uri: str) -> Any:
    """The Optuna objective: one Lightning fit in a nested MLflow run per trial."""
    train = DataLoader(
        TensorDataset(data["x_train"], data["y_train"]), batch_size=args.batch_size, shuffle=True
    )
    evals = [DataLoader(TensorDataset(data["x_val"], data["y_val"]), batch_size=args.batch_size)]
    if args.honest_gap:
        train_eval = TensorDataset(data["x_train"], data["y_train"])
        evals.append(DataLoader(train_eval, batch_size=args.batch_size))

    def objective(trial: optuna.Trial) -> float:
        dropout = trial.suggest_float("model.dropout", *shared.DROPOUT)
        width = trial.suggest_int("model.width", *shared.WIDTH, log=True)
        pl.seed_everything(args.seed, verbose=False)
        module = FraudModule(data["x_train"].shape[1], width, args.depth, dropout, args.lr)
        best = BestValue()
        callbacks: list[pl.Callback] = [best]
        if args.pruner == "on":
            callbacks.append(PruningCallback(trial, monitor="val_auprc"))
        run = mlflow.start_run(run_name=f"trial {trial.number}", nested=True)
        trainer = pl.Trainer(
            max_epochs=args.epochs,
            accelerator="cpu",
            devices=1,
            precision="bf16-mixed" if args.bf16 else "32-true",
            logger=MLFlowLogger(tracking_uri=uri, run_id=run.info.run_id),
            callbacks=callbacks,
            enable_checkpointing=False,
        )
        status = "FAILED"
        try:
            trainer.fit(module, train, evals)
            status = "FINISHED"
        except optuna.TrialPruned:
            status = "KILLED"
            raise
        finally:
            trial.set_user_attr("epochs", best.epochs)
            trial.set_user_attr("best_val_auprc", best.best)
            if best.best is not None:
                mlflow.log_metric("best_val_auprc", best.best)
            mlflow.end_run(status)
        if best.best is None:
            raise RuntimeError("no validation epoch ran")
        return best.best

    return objective


def main() -> None:
    args = shared.parser(__doc__ or "").parse_args()
    start = time.perf_counter()
    data = shared.load_splits(args.data)
    uri = f"sqlite:///{args.root.resolve()}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(EXPERIMENT)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.sampler == "tpe":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=args.seed)
    else:
        sampler = optuna.samplers.RandomSampler(seed=args.seed)
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if args.pruner == "on":
        pruner = optuna.pruners.MedianPruner(args.startup_trials, args.warmup_epochs)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    for width in shared.CONTROL_WIDTHS if args.controls else ():
        study.enqueue_trial({"model.dropout": 0.0, "model.width": width})
    with mlflow.start_run(run_name="study"):
        study.optimize(objective_fn(args, data, uri), n_trials=args.trials)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if done:
            mlflow.log_params({f"best.{k}": v for k, v in study.best_params.items()})
            mlflow.log_metric("best_val_auprc", study.best_value)
    trials = [
        {
            "state": t.state.name,
            "epochs": t.user_attrs.get("epochs", 0),
            "params": t.params,
            "best_val_auprc": t.user_attrs.get("best_val_auprc"),
        }
        for t in study.trials
    ]
    versions = {p: metadata.version(p) for p in ("torch", "pytorch-lightning", "optuna")}
    shared.write_results(
        args.out,
        "lightning_optuna",
        trials,
        honest_gap=args.honest_gap,
        seconds_inside=time.perf_counter() - start,
        versions=versions,
    )


if __name__ == "__main__":
    main()
