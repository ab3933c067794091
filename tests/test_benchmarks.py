"""The benchmark scripts run end to end on a tiny size and print their tables (not timed).

A fifth of ``benchmarks/run.py``'s scripts here, the others in ``test_benchmarks_more.py``,
``_rest``, ``_fourth`` and ``_fifth`` (see ``bench_helpers``)."""

from __future__ import annotations

from .bench_helpers import SHARES, listed_scripts, share, smoke_test


def test_the_shares_cover_every_listed_script_once() -> None:
    shared = [s for i in range(SHARES) for s in share(i)]
    assert sorted(shared) == sorted(listed_scripts()) and len(set(shared)) == len(shared)


test_benchmark_runs_tiny_and_prints_its_table = smoke_test(0)
