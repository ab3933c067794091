"""What every reference check shares: its result line and a quiet droplab fit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from droplab.config.load import load_config
from droplab.config.schema import Config
from droplab.fit.trainer import FitResult, fit


@dataclass(frozen=True)
class CheckResult:
    """One line of ``droplab verify``: a measured number against a published one.

    Attributes:
        name: The check's name.
        measured: What this run measured, formatted.
        published: The reference value (or the rule, e.g. ``> 0``) and where it comes from.
        tolerance: How far apart they may be, in words.
        passed: Whether they agree within the tolerance.
        seconds: Wall time of the check.
    """

    name: str
    measured: str
    published: str
    tolerance: str
    passed: bool
    seconds: float = 0.0

    def line(self) -> str:
        """``NAME measured X published Y tolerance T PASS|FAIL``."""
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"{self.name} measured {self.measured} published {self.published} "
            f"tolerance {self.tolerance} {verdict}"
        )


def check_config(settings: Sequence[str], overrides: Sequence[str]) -> Config:
    """The default config with a check's settings, then the user's overrides, untracked."""
    return load_config(None, ["tracking.enabled=false", *settings, *overrides])


def quiet_fit(cfg: Config) -> FitResult:
    """``fit(cfg)`` without Lightning's per-fit chatter."""
    import logging

    logger = logging.getLogger("pytorch_lightning")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return fit(cfg)
    finally:
        logger.setLevel(level)


@torch.no_grad()
def accuracy_on_test(result: FitResult) -> float:
    """Accuracy of the final model on the test split (eval mode)."""
    data = result.data.to("cpu")
    logits = result.model.cpu().eval()(data.x_test)
    if data.n_classes == 2:
        predicted = (logits.squeeze(-1) > 0).long()
    else:
        predicted = logits.argmax(dim=-1)
    return float((predicted == data.y_test).float().mean())
