"""LightningModule: the loss, the optimizer and the honest per-epoch metrics.

At the end of every training epoch both splits are evaluated the same way, in eval mode
(dropout off), so ``gap/loss = val/loss - train/loss`` measures overfitting and not dropout's
noise. The dropout-on batch losses of the epoch are kept too, as ``train_running/loss``.

One Lightning step is one epoch: ``training_step`` receives the epoch's mini-batches and runs
them with manual optimization. Lightning's machinery around a step (hooks, closure, progress
tracking, batch transfer) costs about 0.5 ms, as much as a width-32 step's arithmetic on CPU;
paid once per epoch instead of once per mini-batch it is noise. Precision is fp32, so the
plain ``loss.backward()`` is what ``manual_backward`` would do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from droplab import metrics
from droplab.config.schema import TrainConfig
from droplab.fit.model import MLP
from droplab.fit.scoring import regression_scores, score


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN or infinite (e.g. a learning rate far too large)."""


class LitMLP(pl.LightningModule):
    """Trains ``model``; evaluates ``train`` and ``val`` (tensors in memory) after each epoch.

    Args:
        model: the plain torch network.
        n_classes: 2 for a binary target (one logit), K > 2 for K classes.
        train_cfg: optimizer settings and the eval chunk size.
        train: ``(x, y)`` of the training split, for the eval-mode pass.
        val: ``(x, y)`` of the validation split.
        pos_weight: weight of positives in ``BCEWithLogitsLoss`` (binary only).
        target_std: a regression's target scale (``n_classes == 0``): metrics in its units.
    """

    def __init__(
        self,
        model: MLP,
        n_classes: int,
        train_cfg: TrainConfig,
        train: tuple[torch.Tensor, torch.Tensor],
        val: tuple[torch.Tensor, torch.Tensor],
        pos_weight: float | None = None,
        target_std: float = 1.0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False  # the mini-batch loop is training_step's
        self.model = model
        self.n_classes = n_classes
        self.cfg = train_cfg
        self.splits = {"train": train, "val": val}
        self.pos_weight = None if pos_weight is None else torch.tensor(pos_weight)
        self.history: list[dict[str, float]] = []
        self.target_std = target_std
        # Gaussian NLL with no fixed train.tau learns one noise precision (homoscedastic).
        learned = n_classes == 0 and train_cfg.loss == "gaussian_nll" and train_cfg.tau is None
        self.log_tau = torch.nn.Parameter(torch.zeros(())) if learned else None
        self._train_mse = 1.0
        self._running_sum = torch.zeros(())
        self._running_count = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``BCEWithLogitsLoss`` (one logit), cross-entropy (K classes), or for a regression
        MSE / Gaussian NLL on the standardised target; mean over rows."""
        if self.n_classes == 0:
            return self.regression_loss(logits.squeeze(-1), y)
        if self.n_classes == 2:
            weight = None if self.pos_weight is None else self.pos_weight.to(logits.device)
            return F.binary_cross_entropy_with_logits(
                logits.squeeze(-1), y.to(logits.dtype), pos_weight=weight
            )
        return F.cross_entropy(logits, y)

    def regression_loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """MSE, or the Gaussian NLL ``(log 2pi - log tau + tau (y - pred)^2) / 2``."""
        if self.cfg.loss == "mse":
            return F.mse_loss(pred, y)
        log_tau = self.log_tau if self.log_tau is not None else torch.tensor(self.fixed_log_tau)
        log_tau = log_tau.to(pred.device)
        sq = (pred - y) ** 2
        return 0.5 * (math.log(2 * math.pi) - log_tau + log_tau.exp() * sq).mean()

    @property
    def fixed_log_tau(self) -> float:
        """``train.tau`` (in the target's units) as a log precision in standardised units."""
        assert self.cfg.tau is not None
        return math.log(self.cfg.tau * self.target_std**2)

    def noise_precision(self) -> float:
        """Tau of the ``*/nll`` metrics, standardised units: learned, fixed, or (MSE loss)
        the maximum-likelihood one of the training split in eval mode, ``1 / mse``."""
        if self.log_tau is not None:
            return float(self.log_tau.detach().exp())
        if self.cfg.tau is not None:
            return math.exp(self.fixed_log_tau)
        return 1.0 / max(self._train_mse, 1e-12)

    def training_step(self, batch: Iterable[tuple[torch.Tensor, torch.Tensor]], _: int) -> None:
        """One epoch of mini-batches: forward, backward, optimizer step for each."""
        optimizer = self.optimizers(use_pl_optimizer=False)
        assert isinstance(optimizer, torch.optim.Optimizer)
        for x, y in batch:
            optimizer.zero_grad()
            loss = self.loss(self.model(x), y)
            loss.backward()
            optimizer.step()
            # Accumulate on the device; one sync per epoch instead of one .item() per step.
            self._running_sum = self._running_sum + loss.detach() * len(y)
            self._running_count += len(y)

    def on_train_epoch_start(self) -> None:
        self._running_sum = torch.zeros((), device=self.device)
        self._running_count = 0

    def close_epoch(self) -> dict[str, float]:
        """The epoch's record: both splits in eval mode, the gaps, the running loss."""
        running = float(self._running_sum) / max(self._running_count, 1)
        epoch = len(self.history) + 1
        if not math.isfinite(running):
            raise NonFiniteLoss(f"{metrics.TRAIN_RUNNING_LOSS} became {running} at epoch {epoch}")
        record = {**self.evaluate("train"), **self.evaluate("val")}
        record.update(metrics.gaps(record))
        record[metrics.TRAIN_RUNNING_LOSS] = running
        self.history.append(record)
        return record

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        """Loss, AUPRC and AUROC of one split in eval mode (dropout off), prefixed ``split/``."""
        x, y = self.splits[split]
        was_training = self.model.training
        self.model.eval()
        chunk = self.cfg.eval_batch_size
        logits = torch.cat([self.model(x[i : i + chunk]) for i in range(0, len(x), chunk)])
        self.model.train(was_training)
        if self.n_classes == 0:
            pred = logits.squeeze(-1)
            if split == "train":
                self._train_mse = float(torch.mean((pred - y) ** 2))
            scores = regression_scores(pred, y, self.noise_precision(), self.target_std)
        else:
            scores = score(logits, y, self.n_classes)
        scores["loss"] = float(self.loss(logits, y))
        return {f"{split}/{name}": value for name, value in scores.items()}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params: Any = self.model.parameters()
        log_tau = getattr(self, "log_tau", None)  # stack.kernels calls this on a stand-in
        if log_tau is not None:
            params = [*params, log_tau]
        c = self.cfg
        if c.optimizer == "sgd":
            return torch.optim.SGD(
                params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
            )
        if c.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
