"""What both peers share, in plain torch and numpy (the Ray peer's virtualenv has no droplab).

The data file is the driver's export (``benchmarks/peers.py``): droplab's own train and
validation splits of the ``droplab data synth`` CSV, already standardised with the training
split's statistics, so every tool trains on the same rows. The model is droplab's MLP for the
defaults (``(Linear -> ReLU -> Dropout) x depth -> Linear``, PyTorch's default init). The
flags are the study's settings; the driver passes the same values to every tool.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

# The main study's dropout-0 controls (droplab's ``study.baselines``): the width space's low,
# geometric middle and high.
CONTROL_WIDTHS = (16, 128, 1024)
DROPOUT = (0.0, 0.8)
WIDTH = (16, 1024)


def parser(description: str) -> argparse.ArgumentParser:
    """The flags both peers take (the driver passes the same values to each)."""
    p = argparse.ArgumentParser(description=description.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="the driver's .npz of the splits")
    p.add_argument("--out", type=Path, required=True, help="write the results here (JSON)")
    p.add_argument("--root", type=Path, required=True, help="MLflow store and scratch files")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", choices=("tpe", "random"), default="tpe")
    p.add_argument("--pruner", choices=("on", "none"), default="on")
    p.add_argument("--startup-trials", type=int, default=5, help="trials before pruning")
    p.add_argument("--warmup-epochs", type=int, default=5, help="epochs before pruning")
    p.add_argument("--controls", action="store_true", help="enqueue the dropout-0 controls")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (mixed precision)")
    p.add_argument(
        "--honest-gap",
        action="store_true",
        help="also evaluate the training split in eval mode each epoch (droplab's work)",
    )
    return p


def load_splits(path: Path) -> dict[str, torch.Tensor]:
    """``x_train, y_train, x_val, y_val`` as float32 features and int64 labels."""
    with np.load(path) as arrays:
        return {name: torch.from_numpy(arrays[name]) for name in arrays.files}


def mlp(n_features: int, width: int, depth: int, dropout: float) -> nn.Module:
    """droplab's default MLP: ``(Linear -> ReLU -> Dropout) x depth -> Linear`` (one logit)."""
    layers: list[nn.Module] = []
    fan_in = n_features
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), nn.ReLU(), nn.Dropout(dropout)]
        fan_in = width
    layers.append(nn.Linear(fan_in, 1))
    return nn.Sequential(*layers)


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the precision-recall curve as a step sum (sklearn's and torchmetrics'
    ``average_precision``), with tied scores taken as one threshold."""
    order = torch.argsort(scores, descending=True)
    s, y = scores[order], labels[order].to(torch.float64)
    tps = torch.cumsum(y, 0)
    fps = torch.cumsum(1 - y, 0)
    last = torch.ones_like(s, dtype=torch.bool)  # the last row of each run of tied scores
    last[:-1] = s[1:] != s[:-1]
    tps, fps = tps[last], fps[last]
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    steps = torch.diff(recall, prepend=torch.zeros(1, dtype=recall.dtype))
    return float((steps * precision).sum())


def write_results(path: Path, tool: str, trials: Sequence[dict[str, Any]], **extra: Any) -> None:
    """The driver's record of one peer run: each trial's state, epochs, params and best value.

    Args:
        path: Where the JSON goes.
        tool: The peer's name.
        trials: One dict per trial: ``state`` (``COMPLETE``/``PRUNED``/``FAIL``), ``epochs``,
            ``params`` and ``best_val_auprc`` (``None`` when none was measured).
        extra: Anything else worth keeping (versions, the honest-gap flag).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"tool": tool, "trials": list(trials), **extra}, indent=2))
