"""Figures written to PNG (matplotlib, headless). Pure rendering from arrays and models."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

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
    fig, axes = plt.subplots(2, 2, figsize=(13, 7))
    row0_eval, row0_train = acts["eval"][0, :units], acts["train"][0, :units]
    # vlines: one artist for all units (a bar chart is one patch per unit, ~1 s to draw)
    axes[0, 0].vlines(range(units), 0, row0_eval, color="tab:blue", lw=4)
    axes[0, 0].set_title(f"eval mode (dropout off): hidden layer {layer + 1}, one row")
    axes[0, 1].vlines(
        range(units), 0, row0_train, color="tab:red", lw=4, label="training-mode pass"
    )
    axes[0, 1].plot(range(units), row0_eval / (1 - p), "k.", ms=3, label="eval x 1/(1-p)")
    axes[0, 1].set_title(f"training mode, p={p:g}: dropped = 0, survivors x {1 / (1 - p):.2f}")
    axes[0, 1].legend(loc="upper right", fontsize=8)
    vmax = float(np.abs(acts["train"]).max()) or 1.0
    for ax, key in ((axes[1, 0], "eval"), (axes[1, 1], "train")):
        im = ax.imshow(acts[key][:, :units], aspect="auto", cmap="magma", vmin=0, vmax=vmax)
        ax.set_xlabel("unit")
        ax.set_ylabel("validation row")
    fig.colorbar(im, ax=axes[1, :], shrink=0.8)
    dropped = 1 - acts["mask"].mean()
    fig.suptitle(f"Inverted dropout on a validation batch: {dropped:.0%} of units dropped")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
