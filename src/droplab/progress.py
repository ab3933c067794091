"""Progress on a terminal: tqdm bars for epochs, trials and seed runs, built in one place."""

from __future__ import annotations

from collections.abc import Mapping

from droplab import metrics
from droplab.fit.trainer import EpochHook


def progress_bar(epochs: int, desc: str) -> EpochHook:
    """An epoch progress bar (stderr) showing val AUPRC and the gap as they come."""
    from tqdm.auto import tqdm

    bar = tqdm(total=epochs, desc=desc, unit="epoch", leave=False)

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
