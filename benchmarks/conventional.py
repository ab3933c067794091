"""The conventional pattern droplab is compared with (the Optuna Lightning example's style).

A LightningModule fed by ``DataLoader(TensorDataset)`` (per-sample indexing and collation),
``self.log`` of the loss on every step with the progress bar on, Lightning's default logger
(CSV here, TensorBoard where installed) and its validation loop doing the same per-epoch work
as droplab: both splits in eval mode, in ``train.eval_batch_size`` chunks, scored with
torchmetrics' functions as such code does (droplab's one-sort scoring gives the same floats and
saves ~75 ms an epoch at 285k rows, small beside this pattern's cost). Same model, optimizer,
batch size, epochs and threads.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

from droplab.config import Config
from droplab.data.splits import Dataset
from droplab.fit.model import MLP

SPLITS = ("train", "val")


class ConventionalModule(pl.LightningModule):
    def __init__(self, model: MLP, lr: float) -> None:
        super().__init__()
        self.model = model
        self.lr = lr
        self.outputs: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {0: [], 1: []}

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.binary_cross_entropy_with_logits(self.model(x).squeeze(-1), y.to(x.dtype))
        self.log("train_loss", loss, prog_bar=True)  # one log call per step, as usual
        return loss

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        self.outputs[dataloader_idx].append((self.model(x).squeeze(-1), y))

    def on_validation_epoch_end(self) -> None:
        for idx, split in enumerate(SPLITS):
            logits = torch.cat([o[0] for o in self.outputs[idx]])
            y = torch.cat([o[1] for o in self.outputs[idx]])
            self.outputs[idx].clear()
            probs = torch.sigmoid(logits)
            loss = F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
            self.log(f"{split}/loss", loss, add_dataloader_idx=False)
            self.log(
                f"{split}/auprc", binary_average_precision(probs, y), add_dataloader_idx=False
            )
            self.log(f"{split}/auroc", binary_auroc(probs, y), add_dataloader_idx=False)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.lr)


def conventional_fit(cfg: Config, data: Dataset, threads: int, cuda: bool) -> dict[str, float]:
    """Train as the conventional pattern does; returns the last epoch's logged metrics.

    The tensors stay on the CPU, as a DataLoader's do; Lightning moves each batch (``cuda``).

    The progress bar is on but written to /dev/null (its formatting cost is paid, a
    terminal's drawing cost is not), so the measured speed-up is if anything understated.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    m, t = cfg.model, cfg.train
    data = data.to("cpu")
    model = MLP(data.n_features, 1, m.width, m.depth, m.dropout, m.input_dropout, m.activation)
    train = DataLoader(
        TensorDataset(data.x_train, data.y_train), batch_size=t.batch_size, shuffle=True
    )
    evals = [
        DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=t.eval_batch_size),
        DataLoader(TensorDataset(data.x_val, data.y_val), batch_size=t.eval_batch_size),
    ]
    with tempfile.TemporaryDirectory() as root, open(os.devnull, "w") as null:
        trainer = pl.Trainer(
            accelerator="gpu" if cuda else "cpu",
            devices=1,
            max_epochs=t.epochs,
            logger=True,
            enable_checkpointing=False,  # as in the Optuna example
            default_root_dir=root,
        )
        with contextlib.redirect_stderr(null), contextlib.redirect_stdout(null):
            trainer.fit(ConventionalModule(model, t.lr), train, evals)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}
