"""Progress: tqdm bars on a terminal, plain lines in a log; both built here, in one place.

A bar redraws itself with carriage returns and escape codes: in a log file (stderr not a
terminal) that is noise, so there the bars stay silent and each finished trial, seed run or
stacked group writes one plain line instead (:func:`log_line`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from tqdm.auto import tqdm

from droplab import metrics

EpochHook = Callable[[int, Mapping[str, float]], None]  # as droplab.fit.trainer's

# What a finished line reports of a run's summary, in this order.
LINE_METRICS = (metrics.BEST_VAL_AUPRC, metrics.BEST_GAP_LOSS, metrics.FINAL_GAP_LOSS)
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")


def on_terminal() -> bool:
    """Whether bars can redraw: stderr (where they go) is a terminal."""
    return sys.stderr.isatty()


def make_bar(total: int, desc: str, unit: str, leave: bool = True) -> tqdm:
    """A bar on stderr counting ``total`` ``unit``s; ``leave=False`` clears it when closed.
    Off the terminal it counts silently (:func:`log_line` reports instead)."""
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, disable=not on_terminal())


def epoch_bar(epochs: int, desc: str) -> EpochHook:
    """An epoch progress bar (stderr) showing val AUPRC and the gap as they come."""
    bar = make_bar(epochs, desc, "epoch", leave=False)

    def update(epoch: int, values: Mapping[str, float]) -> None:
        key = metrics.resolve_monitor(metrics.AUTO, values)  # val/auprc, or val/rmse
        bar.set_postfix(
            {
                key.replace("/", "_"): f"{values[key]:.3f}",
                "gap_loss": f"{values[metrics.GAP_LOSS]:+.4f}",
            },
            refresh=False,
        )
        bar.update(1)
        if epoch >= epochs:
            bar.close()

    return update


def result_line(
    what: str, state: str, params: Mapping[str, Any], summary: Mapping[str, float]
) -> str:
    """``trial 3 COMPLETE model.dropout=0.31 model.width=128 best/val_auprc=0.652 ...``"""
    parts = [what, state]
    parts += [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()]
    parts += [f"{k}={summary[k]:.4f}" for k in LINE_METRICS if k in summary]
    return " ".join(parts)


def log_line(text: str) -> None:
    """One plain line on stderr when it is not a terminal (on a terminal the bars show it);
    control characters are dropped, a log reads the same in any viewer."""
    if not on_terminal():
        print(_CONTROL.sub("", text.replace("\r", " ").replace("\n", " ")), file=sys.stderr)
        sys.stderr.flush()
