"""The benchmark scripts run end to end on a tiny size: share 2 of 5 (see ``bench_helpers``)."""

from .bench_helpers import smoke_test

test_benchmark_runs_tiny_and_prints_its_table = smoke_test(1)
