"""Progress on a terminal: tqdm bars for epochs, trials and seed runs, built in one place."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tqdm.auto import tqdm

from droplab import metrics

EpochHook = Callable[[int, Mapping[str, float]], None]  # as droplab.fit.trainer's


def make_bar(total: int, desc: str, unit: str, leave: bool = True) -> tqdm:
    """A bar on stderr counting ``total`` ``unit``s; ``leave=False`` clears it when closed."""
    return tqdm(total=total, desc=desc, unit=unit, leave=leave)


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
