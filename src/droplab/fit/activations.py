"""Figures written to PNG (matplotlib, headless). Pure rendering from arrays and models."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D

from droplab.fit.model import MLP
from droplab.fit.regularizers import set_noise


def dropout_pass(model: MLP, x: torch.Tensor, seed: int, layer: int = 0) -> dict[str, np.ndarray]:
    """Hidden ``layer`` on batch ``x``: eval mode, and one training-mode dropout pass.

    Returns:
        ``eval`` (dropout off), ``train`` (dropped units at zero, survivors x 1/(1-p)) and
        ``mask`` (1 where a unit survived), as arrays of shape (rows, units).
    """
    was_training = model.training
    with torch.no_grad():
        model.eval()
        _, eval_act = model.hidden(x, layer)
        set_noise(model, True)  # dropout on, BatchNorm left in eval mode (its stats untouched)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            _, train_act = model.hidden(x, layer)
    model.train(was_training)
    mask = (train_act != 0) | (eval_act == 0)
    return {"eval": eval_act.numpy(), "train": train_act.numpy(), "mask": mask.numpy()}


def draw_activations(model: MLP, x: torch.Tensor, seed: int, out: Path, layer: int = 0) -> Path:
    """The seed article's picture, for real: eval activations beside a dropout pass."""
    acts = dropout_pass(model, x, seed, layer)
    p = model.rates[layer]
    units = min(acts["eval"].shape[1], 100)
    row0_eval, row0_train = acts["eval"][0, :units], acts["train"][0, :units]
    scaled = row0_eval / (1 - p)
    vmax = float(np.abs(acts["train"]).max()) or 1.0
    pic = _picture(units, len(acts["eval"]))
    pic.eval_lines.set_segments([[(u, 0.0), (u, v)] for u, v in enumerate(row0_eval)])
    pic.train_lines.set_segments([[(u, 0.0), (u, v)] for u, v in enumerate(row0_train)])
    pic.dots.set_data(range(units), scaled)
    top = pic.fig.axes[:2]
    _fit_y(top[0], row0_eval)
    _fit_y(top[1], np.concatenate([row0_train, scaled]))
    top[0].set_title(f"eval mode (dropout off): hidden layer {layer + 1}, one row")
    top[1].set_title(f"training mode, p={p:g}: dropped = 0, survivors x {1 / (1 - p):.2f}")
    for image, key in zip(pic.images, ("eval", "train"), strict=True):
        image.set_data(acts[key][:, :units])
        image.set_clim(0, vmax)
    dropped = 1 - acts["mask"].mean()
    pic.fig.suptitle(f"Inverted dropout on a validation batch: {dropped:.0%} of units dropped")
    out.parent.mkdir(parents=True, exist_ok=True)
    pic.fig.savefig(out, dpi=90)
    return out


def _fit_y(ax: Axes, values: np.ndarray) -> None:
    """Vertical limits as autoscaling sets them for bars from 0 (5% margins)."""
    finite = values[np.isfinite(values)]
    low, high = min(0.0, float(finite.min(initial=0.0))), max(0.0, float(finite.max(initial=0.0)))
    pad = 0.05 * (high - low) or 0.05
    ax.set_ylim(low - pad, high + pad)


@dataclass(frozen=True)
class _Picture:
    fig: Figure
    eval_lines: LineCollection
    train_lines: LineCollection
    dots: Line2D
    images: tuple[AxesImage, AxesImage]


@functools.lru_cache(maxsize=1)
def _picture(units: int, rows: int) -> _Picture:
    """The figure with its axes, ticks, legend and colorbar, built once per shape and redrawn
    with each model's numbers: building those is ~40% of drawing a fresh figure, and a
    comparison draws one per seed run."""
    fig = Figure(figsize=(13, 7))  # not pyplot's: kept open, and no plt.close("all") ends it
    axes = fig.subplots(2, 2)
    zeros = np.zeros(units)
    # vlines: one artist for all units (a bar chart is one patch per unit, ~1 s to draw)
    eval_lines = axes[0, 0].vlines(range(units), 0, zeros, color="tab:blue", lw=4)
    train_lines = axes[0, 1].vlines(
        range(units), 0, zeros, color="tab:red", lw=4, label="training-mode pass"
    )
    (dots,) = axes[0, 1].plot(range(units), zeros, "k.", ms=3, label="eval x 1/(1-p)")
    axes[0, 1].legend(loc="upper right", fontsize=8)
    images = [ax.imshow(np.zeros((rows, units)), aspect="auto", cmap="magma") for ax in axes[1]]
    for ax in axes[1]:
        ax.set_xlabel("unit")
        ax.set_ylabel("validation row")
    fig.colorbar(images[-1], ax=axes[1, :], shrink=0.8)
    return _Picture(fig, eval_lines, train_lines, dots, (images[0], images[1]))
