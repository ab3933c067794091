"""The benchmark scripts run end to end on a tiny size and print their tables (not timed).

One third of ``benchmarks/run.py``'s scripts here, the others in ``test_benchmarks_more.py``
and ``test_benchmarks_rest.py`` (see ``bench_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .bench_helpers import SHARES, listed_scripts, runs_tiny_and_prints_its_table, share


def test_the_shares_cover_every_listed_script_once() -> None:
    shared = [s for i in range(SHARES) for s in share(i)]
    assert sorted(shared) == sorted(listed_scripts()) and len(set(shared)) == len(shared)


@pytest.mark.slow
@pytest.mark.parametrize("script", share(0))
def test_benchmark_runs_tiny_and_prints_its_table(script: str, tmp_path: Path) -> None:
    runs_tiny_and_prints_its_table(script, tmp_path)
