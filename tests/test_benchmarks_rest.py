"""The benchmark scripts run end to end on a tiny size: share 2 of 3 (see ``bench_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .bench_helpers import runs_tiny_and_prints_its_table, share


@pytest.mark.slow
@pytest.mark.parametrize("script", share(2))
def test_benchmark_runs_tiny_and_prints_its_table(script: str, tmp_path: Path) -> None:
    runs_tiny_and_prints_its_table(script, tmp_path)
