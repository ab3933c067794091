"""LightningModule: the loss, the optimizer and the honest per-epoch metrics.

At the end of every training epoch both splits are evaluated the same way, in eval mode
(dropout off), so ``gap/loss = val/loss - train/loss`` measures overfitting and not dropout's
noise. The dropout-on batch losses of the epoch are kept too, as ``train_running/loss``.

One Lightning step is one epoch: ``training_step`` receives the epoch's mini-batches and runs
them with manual optimization. Lightning's machinery around a step (hooks, closure, progress
tracking, batch transfer) costs about 0.5 ms, as much as a width-32 step's arithmetic on CPU;
paid once per epoch instead of once per mini-batch it is noise. Lightning's precision plugin
is not used (``manual_backward`` would add nothing to a plain ``loss.backward()``): with
``bf16-mixed`` the training forward runs under ``torch.autocast`` (bfloat16 matrix products),
while the weights, the optimizer, the loss and the eval-mode pass stay float32, so the gap is
measured in full precision.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from droplab import metrics
from droplab.config.schema import Config, TrainConfig
from droplab.fit import calibration, regularizers
from droplab.fit.model import MLP
from droplab.fit.scoring import regression_scores, score, score_probs

BF16 = "bf16-mixed"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[None]:
    """The training forward's precision: bfloat16 products under ``bf16-mixed``, else a no-op."""
    if precision != BF16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN or infinite (e.g. a learning rate far too large)."""


@dataclass(frozen=True)
class Extras:
    """The regularizer arena's settings that act during training and evaluation (the
    defaults are plain training: nothing here then touches a tensor or the RNG)."""

    schedule: str = "constant"
    switch_epoch: int | None = None
    max_norm: float | None = None
    mc_samples: int = 0
    seed: int = 0

    @classmethod
    def of(cls, cfg: Config) -> Extras:
        m = cfg.model
        return cls(
            m.dropout_schedule, m.dropout_switch_epoch, m.max_norm, cfg.eval.mc_samples, cfg.seed
        )


class LitMLP(pl.LightningModule):
    """Trains ``model``; evaluates ``train`` and ``val`` (tensors in memory) after each epoch.

    Args:
        model: the plain torch network.
        n_classes: 2 for a binary target (one logit), K > 2 for K classes.
        train_cfg: optimizer settings and the eval chunk size.
        train: ``(x, y)`` of the training split, for the eval-mode pass.
        val: ``(x, y)`` of the validation split.
        pos_weight: weight of positives in ``BCEWithLogitsLoss`` (binary only).
        extras: dropout schedule, max-norm and MC dropout (default: none of them).
        target_std: a regression's target scale (``n_classes == 0``): metrics in its units.
        precision: ``32``, or ``bf16-mixed`` for the training forward (see the module doc).
    """

    def __init__(
        self,
        model: MLP,
        n_classes: int,
        train_cfg: TrainConfig,
        train: tuple[torch.Tensor, torch.Tensor],
        val: tuple[torch.Tensor, torch.Tensor],
        pos_weight: float | None = None,
        extras: Extras | None = None,
        target_std: float = 1.0,
        precision: str = "32",
    ) -> None:
        super().__init__()
        self.automatic_optimization = False  # the mini-batch loop is training_step's
        self.model = model
        self.n_classes = n_classes
        self.cfg = train_cfg
        self.splits = {"train": train, "val": val}
        self.pos_weight = None if pos_weight is None else torch.tensor(pos_weight)
        self.extras = extras or Extras()
        self.history: list[dict[str, float]] = []
        self.target_std = target_std
        self.precision = precision
        # Gaussian NLL with no fixed train.tau learns one noise precision (homoscedastic).
        learned = n_classes == 0 and train_cfg.loss == "gaussian_nll" and train_cfg.tau is None
        self.log_tau = torch.nn.Parameter(torch.zeros(())) if learned else None
        self._train_mse = 1.0
        self._running_sum = torch.zeros(())
        self._running_count = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        """``BCEWithLogitsLoss`` (one logit), cross-entropy (K classes), or for a regression
        MSE / Gaussian NLL on the standardised target; mean over rows.

        ``smoothing`` (training only: eval losses stay plain so the gap compares like with
        like) moves binary targets to ``y (1 - e) + e / 2`` and uses cross-entropy's own
        ``label_smoothing`` for several classes.
        """
        if self.n_classes == 0:
            return self.regression_loss(logits.squeeze(-1), y)
        if self.n_classes == 2:
            weight = None if self.pos_weight is None else self.pos_weight.to(logits.device)
            target = y.to(logits.dtype)
            if smoothing > 0:
                target = target * (1 - smoothing) + smoothing / 2
            return F.binary_cross_entropy_with_logits(
                logits.squeeze(-1), target, pos_weight=weight
            )
        return F.cross_entropy(logits, y, label_smoothing=smoothing)

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
        self.train_epoch(batch, optimizer)

    def train_epoch(
        self, batch: Iterable[tuple[torch.Tensor, torch.Tensor]], optimizer: torch.optim.Optimizer
    ) -> None:
        """:meth:`training_step` with the optimizer given (members trained in lockstep)."""
        extras, smoothing = self.extras, self.cfg.label_smoothing
        epoch = len(self.history) + 1
        if extras.schedule != "constant":
            active = regularizers.schedule_active(extras.schedule, extras.switch_epoch, epoch)
            regularizers.set_noise(self.model, active)
        concrete = bool(regularizers.concrete_rates(self.model))
        n_train = len(self.splits["train"][1])
        for x, y in batch:
            optimizer.zero_grad()
            with autocast(x.device, self.precision):
                logits = self.model(x)
            loss = self.loss(logits.float(), y, smoothing)
            penalty = regularizers.concrete_penalty(self.model, n_train) if concrete else None
            (loss if penalty is None else loss + penalty).backward()
            optimizer.step()
            if extras.max_norm is not None:
                regularizers.apply_max_norm(self.model, extras.max_norm)
            # The data loss only (the concrete penalty is not a loss on rows); on the device:
            # one sync per epoch instead of one .item() per step.
            self._running_sum = self._running_sum + loss.detach() * len(y)
            self._running_count += len(y)

    def on_train_epoch_start(self) -> None:
        self._running_sum = torch.zeros((), device=self.device)
        self._running_count = 0

    def set_running_loss(self, total: torch.Tensor, rows: int) -> None:
        """Set the epoch's dropout-on loss as ``training_step`` accumulates it: the sum of batch
        mean x batch rows, over ``rows`` rows (a stack trains its members outside Lightning)."""
        self._running_sum = total
        self._running_count = rows

    def close_epoch(self) -> dict[str, float]:
        """The epoch's record: both splits in eval mode, the gaps, the running loss (and the
        learned dropout rates, BatchNorm's variance shift and MC dropout where they apply)."""
        running = float(self._running_sum) / max(self._running_count, 1)
        epoch = len(self.history) + 1
        if not math.isfinite(running):
            raise NonFiniteLoss(f"{metrics.TRAIN_RUNNING_LOSS} became {running} at epoch {epoch}")
        record = {**self.evaluate("train"), **self.evaluate("val")}
        record.update(metrics.gaps(record))
        record[metrics.TRAIN_RUNNING_LOSS] = running
        for i, rate in enumerate(regularizers.concrete_rates(self.model), start=1):
            record[metrics.dropout_rate(i)] = rate
        if self.extras.mc_samples > 0:
            record.update(self.evaluate_mc())
        self.history.append(record)
        return record

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        """Loss, AUPRC, AUROC, ECE and Brier of one split in eval mode (dropout off), prefixed
        ``split/``; on ``val`` also BatchNorm's variance shift, read during the same pass."""
        x, y = self.splits[split]
        was_training = self.model.training
        self.model.eval()
        chunk = self.cfg.eval_batch_size
        with regularizers.VarianceShift(self.model) as shift:
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
        out = {f"{split}/{name}": value for name, value in scores.items()}
        if split == "val":
            for i, ratio in enumerate(shift.ratios(), start=1):
                out[metrics.variance_shift(i)] = ratio
        return out

    def evaluate_mc(self) -> dict[str, float]:
        """MC dropout on the validation split: ``eval.mc_samples`` dropout-on passes averaged
        (one batched pass; the training's RNG stream is left untouched)."""
        x, y = self.splits["val"]
        samples, chunk = self.extras.mc_samples, self.cfg.eval_batch_size
        probs = regularizers.mc_probabilities(self.model, x, samples, chunk, self.extras.seed)
        scores = score_probs(probs, y, self.n_classes)
        return {
            metrics.VAL_MC_LOSS: calibration.nll(probs, y),
            metrics.VAL_MC_AUPRC: scores["auprc"],
            metrics.VAL_MC_ECE: scores["ece"],
            metrics.VAL_MC_ENTROPY: calibration.entropy(probs),
        }

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # Gaussian NLL learns its noise precision with the weights.
        tau = [self.log_tau] if self.log_tau is not None else []
        return build_optimizer([*self.model.parameters(), *tau], self.cfg)


def build_optimizer(params: Iterable[torch.Tensor], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``train.optimizer`` names over ``params`` (``fit``'s, and the stack's)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
