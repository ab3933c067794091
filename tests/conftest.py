"""Shared fixtures: the real default config, shrunk so a fit takes a fraction of a second."""

from __future__ import annotations

from pathlib import Path

import pytest

from droplab.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]

# Small but honest: enough rows that each split holds positives, a few epochs.
TINY = [
    "data.rows=1500",
    "data.fraud_rate=0.05",
    "model.width=16",
    "train.epochs=3",
    "train.batch_size=128",
    "train.threads=1",
]


def tiny_config(tmp_path: Path, *overrides: str, experiment: str | None = None) -> Config:
    """The real default config, shrunk, with every store under ``tmp_path``."""
    return load_config(experiment, [f"paths.runs={tmp_path / 'runs'}", *TINY, *overrides])


@pytest.fixture
def tiny(tmp_path: Path) -> Config:
    return tiny_config(tmp_path)
