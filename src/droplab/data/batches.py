"""Mini-batches as slices of in-memory tensors in a seeded order (no per-sample DataLoader)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


class Batches:
    """Mini-batches sliced from a seeded permutation of in-memory tensors (no DataLoader).

    The permutation generator is seeded once, so epoch ``k`` (the ``k``-th ``iter()``) uses the
    ``k``-th permutation drawn from it: reproducible, different every epoch, and the global
    torch RNG is never touched.
    """

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int, shuffle: bool = True
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x = x
        self.y = y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._generator = torch.Generator(device="cpu").manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Drawn here, not lazily inside the generator, so calling iter() is what starts an epoch.
        if not self.shuffle:
            return self._slices(None)
        return self._slices(self.permutation().to(self.x.device))

    def permutation(self) -> torch.Tensor:
        """Draw the next epoch's row order (on the CPU), as ``iter()`` does: a stack of
        members that share one gather draws each member's order with this."""
        return torch.randperm(len(self.x), generator=self._generator)

    def _slices(self, order: torch.Tensor | None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.x), self.batch_size):
            stop = start + self.batch_size
            if order is None:
                yield self.x[start:stop], self.y[start:stop]
            else:
                idx = order[start:stop]
                yield self.x[idx], self.y[idx]
