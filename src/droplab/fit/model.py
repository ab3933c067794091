"""A plain torch MLP with dropout (no Lightning, Optuna or MLflow here).

PyTorch's ``nn.Dropout(p)`` is *inverted* dropout: ``p`` is the probability of DROPPING a unit,
and during training the survivors are multiplied by ``1 / (1 - p)``, so nothing is rescaled at
test time. (Srivastava et al. 2014 write ``p`` for the probability of KEEPING a unit and scale
the weights by ``p`` at test time; the expectation of every activation is the same either way.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from droplab.fit.masks import bernoulli_dropout
from droplab.fit.regularizers import ConcreteDropout, DropConnectLinear, GaussianDropout

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}


def dropout_rates(dropout: float | Sequence[float], depth: int) -> list[float]:
    """One drop probability per hidden layer."""
    if isinstance(dropout, int | float):
        return [float(dropout)] * depth
    rates = [float(p) for p in dropout]
    if len(rates) != depth:
        raise ValueError(f"got {len(rates)} dropout rates for {depth} hidden layers")
    return rates


def _noise(kind: str, rate: float, rng: str) -> nn.Module:
    """The unit-noise layer after a hidden layer (DropConnect masks the Linear instead)."""
    if kind == "gaussian":
        return GaussianDropout(rate)
    if kind == "alpha":
        return nn.AlphaDropout(rate)
    if kind == "concrete":
        return ConcreteDropout(rate)
    if kind == "dropconnect":
        return nn.Identity()
    return bernoulli_dropout(rng, rate)


def _linear(kind: str, fan_in: int, width: int, rate: float) -> nn.Linear:
    if kind == "dropconnect":
        return DropConnectLinear(fan_in, width, rate)
    return nn.Linear(fan_in, width)


def _norm(norm: str, width: int) -> list[nn.Module]:
    if norm == "batch":
        return [nn.BatchNorm1d(width)]
    if norm == "layer":
        return [nn.LayerNorm(width)]
    return []


def _lecun_normal(model: nn.Module) -> None:
    """SELU's initialisation: weights ~ N(0, 1 / fan_in), biases 0 (Klambauer et al. 2017)."""
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, 1.0 / math.sqrt(layer.in_features))
            nn.init.zeros_(layer.bias)


class MLP(nn.Module):
    """``[input dropout] -> (Linear -> [norm] -> activation -> noise) x depth -> Linear``.

    Args:
        n_features: input width.
        n_outputs: 1 for a binary target (one logit), K for K classes.
        width: units per hidden layer.
        depth: number of hidden layers.
        dropout: drop probability after each hidden layer, or one per layer.
        input_dropout: drop probability on the inputs.
        activation: name of the hidden activation (``alpha`` dropout uses SELU instead).
        dropout_kind: ``bernoulli`` (``nn.Dropout``), ``gaussian``, ``alpha``, ``dropconnect``
            (the hidden Linear layers drop weights at each hidden layer's rate) or ``concrete``
            (learned rates starting at ``dropout``); input dropout is Bernoulli for every kind.
        norm: ``none``, ``batch`` or ``layer`` normalisation before each activation.
        dropout_rng: where Bernoulli masks (input dropout, and hidden dropout of the
            ``bernoulli`` kind) come from: ``torch`` (``nn.Dropout``) or ``pcg64``
            (:mod:`droplab.fit.masks`).
    """

    def __init__(
        self,
        n_features: int,
        n_outputs: int,
        width: int,
        depth: int,
        dropout: float | Sequence[float] = 0.0,
        input_dropout: float = 0.0,
        activation: str = "relu",
        dropout_kind: str = "bernoulli",
        norm: str = "none",
        dropout_rng: str = "torch",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if input_dropout > 0:
            layers.append(bernoulli_dropout(dropout_rng, input_dropout))
        fan_in = n_features
        self.rates = dropout_rates(dropout, depth)
        self._hidden_drops: list[int] = []
        act = nn.SELU if dropout_kind == "alpha" else _ACTIVATIONS[activation]
        for rate in self.rates:
            layers += [_linear(dropout_kind, fan_in, width, rate), *_norm(norm, width), act()]
            layers.append(_noise(dropout_kind, rate, dropout_rng))
            self._hidden_drops.append(len(layers) - 1)
            fan_in = width
        layers.append(nn.Linear(fan_in, n_outputs))
        self.net = nn.Sequential(*layers)
        if dropout_kind == "alpha":
            _lecun_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def hidden(self, x: torch.Tensor, layer: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Activations of hidden ``layer`` before and after its dropout, in the current mode.

        Returns:
            ``(pre_dropout, post_dropout)``; in training mode the second has the dropped units at
            zero and the survivors scaled by ``1 / (1 - p)``.
        """
        stop = self._hidden_drops[layer]
        pre = self.net[:stop](x)
        return pre, self.net[stop](pre)
