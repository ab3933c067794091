"""Dropout kinds and the regularizers that compete with dropout (plain torch).

Every noise layer here keeps the expected activation (or pre-activation) of training mode equal
to its eval-mode value, as PyTorch's inverted ``nn.Dropout`` does, so eval mode needs no
rescaling and the honest gap compares like with like:

- :class:`GaussianDropout`: multiplicative ``N(1, p / (1 - p))`` noise (Srivastava et al.
  2014, section 10): the variance of Bernoulli dropout's ``mask / (1 - p)``, mean 1.
- ``nn.AlphaDropout`` (built by :mod:`droplab.fit.model` with SELU and LeCun-normal init):
  keeps the mean and variance of standard-normal inputs (Klambauer et al. 2017).
- :class:`DropConnectLinear`: a Linear layer whose weights (not units) are dropped, a fresh
  mask for every forward call (so per mini-batch), survivors scaled by ``1 / (1 - p)``.
- :class:`ConcreteDropout`: a learned drop rate per layer through the relaxed Bernoulli
  (Gal, Hron & Kendall 2017), trained with :func:`concrete_penalty` added to the loss.

The schedules (:func:`set_noise`), the max-norm constraint (:func:`apply_max_norm`), MC dropout
(:func:`mc_probabilities`) and BatchNorm's variance shift (:class:`VarianceShift`) act on any
model through the noise layers they find.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

# Gal, Hron & Kendall 2017 (their released code): weight regularizer l^2 / N with prior length
# scale l = 1e-4, dropout regularizer 2 / (tau N) with tau = 1; N = training rows. The dropout
# term is K x the negative entropy of Bernoulli(p) (K = units dropped), which is what pulls the
# learned rate away from 0; the data loss pulls it down.
CONCRETE_LENGTHSCALE = 1e-4
CONCRETE_TAU = 1.0
CONCRETE_TEMPERATURE = 0.1  # the relaxation's temperature (Gal et al. use 0.1)
_EPS = 1e-7


class GaussianDropout(nn.Module):
    """Multiplies by ``1 + sqrt(p / (1 - p)) * N(0, 1)`` in training mode; identity in eval."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        std = math.sqrt(self.p / (1 - self.p))
        return x * (1 + std * torch.randn_like(x))


class DropConnectLinear(nn.Linear):
    """``nn.Linear`` that drops each weight with probability ``p`` in training mode (Wan et al.
    2013); the bias is kept. A new mask is drawn at every call."""

    def __init__(self, in_features: int, out_features: int, p: float) -> None:
        super().__init__(in_features, out_features)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return super().forward(x)
        mask = torch.empty_like(self.weight).bernoulli_(1 - self.p)
        return F.linear(x, self.weight * mask / (1 - self.p), self.bias)


class ConcreteDropout(nn.Module):
    """Dropout with a learned rate: ``x * (1 - z) / (1 - p)``, ``z`` a relaxed Bernoulli(p).

    ``p = sigmoid(logit)`` stays in (0, 1) by construction; it starts at ``p_init`` (clamped to
    [1e-3, 1 - 1e-3], as a rate of exactly 0 could never move).
    """

    def __init__(self, p_init: float, temperature: float = CONCRETE_TEMPERATURE) -> None:
        super().__init__()
        p = min(max(p_init, 1e-3), 1 - 1e-3)
        self.logit = nn.Parameter(torch.tensor(math.log(p / (1 - p))))
        self.temperature = temperature

    @property
    def rate(self) -> torch.Tensor:
        return torch.sigmoid(self.logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        u = torch.rand_like(x).clamp(_EPS, 1 - _EPS)
        drop = torch.sigmoid((self.logit + torch.log(u) - torch.log1p(-u)) / self.temperature)
        return x * (1 - drop) / (1 - self.rate)


NOISE_TYPES = (nn.Dropout, nn.AlphaDropout, GaussianDropout, DropConnectLinear, ConcreteDropout)


def noise_layers(model: nn.Module) -> Iterator[nn.Module]:
    """The modules of ``model`` that draw random masks or noise in training mode."""
    return (m for m in model.modules() if isinstance(m, NOISE_TYPES))


def set_noise(model: nn.Module, active: bool) -> None:
    """Switch every noise layer on (training mode) or off, leaving the rest of the model (e.g.
    BatchNorm) in its mode: dropout schedules and MC dropout."""
    for layer in noise_layers(model):
        layer.train(active)


def schedule_active(schedule: str, switch_epoch: int | None, epoch: int) -> bool:
    """Whether dropout is on in ``epoch`` (from 1): ``early`` before the switch epoch only,
    ``late`` from it on (Liu et al. 2023), ``constant`` always."""
    if schedule == "constant" or switch_epoch is None:
        return True
    return epoch < switch_epoch if schedule == "early" else epoch >= switch_epoch


@torch.no_grad()
def apply_max_norm(model: nn.Module, max_norm: float) -> None:
    """Rescale each hidden unit's incoming weight vector to L2 norm <= ``max_norm``
    (Srivastava et al. 2014, section 5.1); the output layer is left free."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for layer in linears[:-1]:
        norms = layer.weight.norm(dim=1, keepdim=True)
        layer.weight.mul_(torch.clamp(max_norm / norms.clamp_min(_EPS), max=1.0))


def concrete_rates(model: nn.Module) -> list[float]:
    """The learned rate of each concrete dropout layer, in order."""
    return [float(m.rate.detach()) for m in model.modules() if isinstance(m, ConcreteDropout)]


def concrete_penalty(model: nn.Module, n_train: int) -> torch.Tensor | None:
    """Gal et al.'s regularizer, summed over concrete layers, to add to the mean batch loss:
    ``l^2/N * ||W||^2 / (1 - p) + 2/(tau N) * K * (p log p + (1 - p) log(1 - p))``, where ``W``
    is the Linear layer that reads the dropped units and ``K`` their number."""
    layers = list(model.modules())
    total: torch.Tensor | None = None
    for i, layer in enumerate(layers):
        if not isinstance(layer, ConcreteDropout):
            continue
        reader = next(m for m in layers[i + 1 :] if isinstance(m, nn.Linear))
        p = layer.rate
        weight = CONCRETE_LENGTHSCALE**2 / n_train * reader.weight.pow(2).sum() / (1 - p)
        entropy = p * torch.log(p) + (1 - p) * torch.log1p(-p)
        term = weight + 2.0 / (CONCRETE_TAU * n_train) * reader.in_features * entropy
        total = term if total is None else total + term
    return total


@torch.no_grad()
def mc_probabilities(
    model: nn.Module, x: torch.Tensor, samples: int, chunk: int, seed: int
) -> torch.Tensor:
    """Class probabilities averaged over ``samples`` dropout-on passes (MC dropout, Gal &
    Ghahramani 2016): ``(n,)`` positive-class ones for one logit, else ``(n, K)``.

    The rows are repeated ``samples`` times and run as one batch (each copy draws its own
    masks), in chunks of ``chunk`` rows; DropConnect masks weights, not rows, so it runs one
    pass per sample. The global RNG is forked and seeded with ``seed``, so the training's
    random stream is the same with or without MC dropout. BatchNorm stays in eval mode.
    """
    was_training = model.training
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model.eval()
        set_noise(model, True)
        per_row = not any(isinstance(m, DropConnectLinear) for m in model.modules())
        if per_row:
            rows = x.repeat(samples, 1)
            logits = torch.cat([model(rows[i : i + chunk]) for i in range(0, len(rows), chunk)])
        else:
            logits = torch.cat(
                [torch.cat([model(x[i : i + chunk]) for i in range(0, len(x), chunk)])
                 for _ in range(samples)]
            )  # fmt: skip
        model.train(was_training)
    logits = logits.view(samples, len(x), -1)
    if logits.shape[-1] == 1:
        return torch.sigmoid(logits.squeeze(-1)).mean(0)
    return torch.softmax(logits, dim=-1).mean(0)


class VarianceShift:
    """Collects, during one eval-mode forward pass, the input variance of every BatchNorm
    layer, to compare with the running variance it learned with dropout on (Li et al. 2019).

    Use as a context manager around the pass; :meth:`ratios` is then ``mean over units of
    running_var / eval-mode batch variance`` per layer (1: no shift; > 1: training-mode inputs
    were more spread than eval-mode ones).
    """

    def __init__(self, model: nn.Module) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
        self.inputs: list[list[torch.Tensor]] = [[] for _ in self.layers]
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> VarianceShift:
        for i, layer in enumerate(self.layers):
            self._handles.append(layer.register_forward_pre_hook(self._keeper(i)))
        return self

    def __exit__(self, *_: object) -> None:
        for handle in self._handles:
            handle.remove()

    def _keeper(self, i: int) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def keep(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            self.inputs[i].append(args[0].detach())

        return keep

    def ratios(self) -> list[float]:
        out = []
        for layer, chunks in zip(self.layers, self.inputs, strict=True):
            var = torch.cat(chunks).var(dim=0, unbiased=True)
            assert layer.running_var is not None
            out.append(float((layer.running_var / var.clamp_min(_EPS)).mean()))
        return out
