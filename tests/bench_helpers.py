"""The benchmark scripts' smoke run (``--tiny``), shared by the ``test_benchmarks*`` files.

The scripts are split over several test files because ``pytest --dist loadfile`` gives each
file to one worker: one file of twelve whole-process scripts would be the suite's long pole.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARES = 5  # test_benchmarks.py, _more, _rest, _fourth, _fifth: ~40-90 s of smoke runs each


def listed_scripts() -> tuple[str, ...]:
    """``benchmarks/run.py``'s SCRIPTS (read, not imported: run.py imports its siblings)."""
    tree = ast.parse((REPO / "benchmarks" / "run.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SCRIPTS":
            return tuple(ast.literal_eval(node.value))
    raise AssertionError("benchmarks/run.py has no SCRIPTS")


def share(index: int) -> tuple[str, ...]:
    """The scripts test file ``index`` runs: every ``SHARES``-th one, so all are covered."""
    return listed_scripts()[index::SHARES]


def runs_tiny_and_prints_its_table(script: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--tiny", "--no-wait"]
        + ["--only", script, "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # the script and the run.py entry both exit 0
    assert done.returncode == 0, done.stderr[-3000:]
    # it prints a Markdown table with at least one row
    assert "### " in done.stdout and "|---|" in done.stdout
    # its figures are written for run.py, and run.py joins the tables into results.md
    figures = json.loads((tmp_path / f"{script}.json").read_text())
    assert figures["tiny"] is True and figures["table"] in (tmp_path / "results.md").read_text()


def smoke_test(index: int) -> Callable[[str, Path], None]:
    """The test of share ``index``, for its file to bind as ``test_...`` (one per file)."""

    @pytest.mark.slow
    @pytest.mark.parametrize("script", share(index))
    def test_benchmark_runs_tiny_and_prints_its_table(script: str, tmp_path: Path) -> None:
        runs_tiny_and_prints_its_table(script, tmp_path)

    return test_benchmark_runs_tiny_and_prints_its_table
