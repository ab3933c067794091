"""Bernoulli dropout masks from PCG64 bits: ``model.dropout_rng: pcg64`` (plain torch + numpy).

torch's CPU dropout (``bernoulli_``) draws one float64 uniform per unit from the Mersenne
Twister, one after another: on a (512, 1000) activation ~6.4 ms on one core, more than that
layer's matrix product, and 46% of a width-841 fit with dropout (``benchmarks/arithmetic.py``).
Here each call draws one seed from the torch generator -- so ``torch.manual_seed``, the stacked
members' own generators and MC dropout's fork steer it exactly as they steer ``nn.Dropout`` --
and numpy's PCG64 gives 32 random bits per unit; a unit is kept when its bits are at least
``round(p * 2**32)``: Bernoulli(1 - p) to within 2**-32, ~5x cheaper. The masks differ from
``nn.Dropout``'s, so the key is part of a run's identity (at its default, ``torch``, it is not).
On CUDA, torch's own dropout (Philox, on the device) is already fast and is used as is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DROPOUT_RNGS = ("torch", "pcg64")
_SEED_BOUND = 2**62


def threshold(p: float) -> np.uint32:
    """The smallest 32-bit value that keeps a unit at drop probability ``p`` (0 < p < 1)."""
    return np.uint32(min(round(p * 2**32), 2**32 - 1))


def keep_mask(
    shape: Sequence[int], p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A boolean keep-mask of ``shape`` (CPU): one seed from ``generator`` (torch's default
    generator when None), then 32 PCG64 bits per unit."""
    seed = int(torch.randint(0, _SEED_BOUND, (), generator=generator))
    n = math.prod(shape)
    bits = np.random.PCG64(seed).random_raw((n + 1) // 2).view(np.uint32)[:n]
    return torch.from_numpy(bits >= threshold(p)).reshape(tuple(shape))


class Pcg64Dropout(nn.Dropout):
    """``nn.Dropout(p)`` with its CPU masks from :func:`keep_mask` (survivors divided by
    ``1 - p`` as torch divides); identity in eval mode and at p = 0, which draws nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu" or self.p == 1:
            return F.dropout(x, self.p, True)
        return x * keep_mask(x.shape, self.p).to(x.dtype).div_(1 - self.p)


def bernoulli_dropout(rng: str, p: float) -> nn.Dropout:
    """The Bernoulli dropout layer that draws its masks from ``rng`` (:data:`DROPOUT_RNGS`)."""
    return Pcg64Dropout(p) if rng == "pcg64" else nn.Dropout(p)
