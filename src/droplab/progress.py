"""Progress on a terminal: tqdm bars for epochs, trials and seed runs, built in one place."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from droplab import metrics

# fit.trainer.EpochHook, spelled here: progress sits below fit in the layers.
EpochHook = Callable[[int, Mapping[str, float]], None]


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
