"""A plain torch MLP with dropout (no Lightning, Optuna or MLflow here).

PyTorch's ``nn.Dropout(p)`` is *inverted* dropout: ``p`` is the probability of DROPPING a unit,
and during training the survivors are multiplied by ``1 / (1 - p)``, so nothing is rescaled at
test time. (Srivastava et al. 2014 write ``p`` for the probability of KEEPING a unit and scale
the weights by ``p`` at test time; the expectation of every activation is the same either way.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

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


class MLP(nn.Module):
    """``[input dropout] -> (Linear -> activation -> Dropout) x depth -> Linear`` to logits.

    Args:
        n_features: input width.
        n_outputs: 1 for a binary target (one logit), K for K classes.
        width: units per hidden layer.
        depth: number of hidden layers.
        dropout: drop probability after each hidden layer, or one per layer.
        input_dropout: drop probability on the inputs.
        activation: name of the hidden activation.
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
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if input_dropout > 0:
            layers.append(nn.Dropout(input_dropout))
        fan_in = n_features
        self.rates = dropout_rates(dropout, depth)
        self._hidden_drops: list[int] = []
        for rate in self.rates:
            layers += [nn.Linear(fan_in, width), _ACTIVATIONS[activation](), nn.Dropout(rate)]
            self._hidden_drops.append(len(layers) - 1)
            fan_in = width
        layers.append(nn.Linear(fan_in, n_outputs))
        self.net = nn.Sequential(*layers)

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
