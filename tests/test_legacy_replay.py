"""Runs logged by droplab before the package redesign (commit a7721c3) replay bit for bit.

``tests/fixtures/legacy_store`` is a small MLflow store written by that version: one
``droplab train`` run, the four seed runs of a 2 x 2 comparison (trained as one stack) and
the three trial runs of a study. Its artifact paths were recorded under
``/tmp/droplab_legacy_fixture``; the test copies the store and points them at the copy.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from droplab.replay import EXIT_MATCH, replay
from droplab.tracking.provenance import cpu_model

FIXTURE = Path(__file__).parent / "fixtures" / "legacy_store"
RECORDED_ROOT = "/tmp/droplab_legacy_fixture/runs"
LEGACY_RUNS = {
    "a9599605820442fbb72d8e85c6ae3e8c": "train",
    "7c805418b291482b8c2dda5208371747": "seed",
    "e48f580c8f0e4e1ba28f8836beb5daf5": "seed",
    "6032d2e1d5694f3d9735bdcf88577706": "seed",
    "a53b8b8868004fe0931b93f1a3892bcd": "seed",
    "44bdf03e85164b29b433a631c15a7f90": "trial",
    "ece6e2ed710a4c63854ef1258b0489d7": "trial",
    "8b3c1c3b80c345a5a31f83d6f27c1d33": "trial",
}
# The store was written on an AMD EPYC (AVX-512); its manifests predate the CPU model field. On
# another CPU model MKL/oneDNN pick other kernels and float32 sums round apart in the last bits
# (measured on an Intel Xeon with AMX: at most ~1e-7 after 3 epochs), so there the replay is
# compared at a tolerance far below any real change of behaviour.
LOGGED_ON = "AMD EPYC"
ELSEWHERE_TOLERANCE = 1e-6


def _legacy_store(tmp_path: Path) -> str:
    root = tmp_path / "runs"
    shutil.copytree(FIXTURE, root)
    with sqlite3.connect(root / "mlflow.db") as db:
        for table, column in (("runs", "artifact_uri"), ("experiments", "artifact_location")):
            db.execute(
                f"UPDATE {table} SET {column} = replace({column}, ?, ?)",
                (RECORDED_ROOT, str(root)),
            )
    return f"sqlite:///{root / 'mlflow.db'}"


@pytest.mark.slow
@pytest.mark.parametrize("run_id", sorted(LEGACY_RUNS), ids=lambda r: f"{LEGACY_RUNS[r]}-{r[:6]}")
def test_a_run_logged_before_the_redesign_replays_exactly(tmp_path: Path, run_id: str) -> None:
    same_cpu = cpu_model().startswith(LOGGED_ON)
    result = replay(run_id, _legacy_store(tmp_path), 0.0 if same_cpu else ELSEWHERE_TOLERANCE)
    # the data digest and every per-epoch and summary metric equal what the old version logged
    # (bit for bit on the CPU model that logged them)
    assert result.exit_code == EXIT_MATCH, [c for c in result.checks if not c.ok]
    assert len(result.checks) > 10
    # and the replay says which CPU logged the run when it cannot tell it is this one
    assert any("a CPU the manifest does not name" in note for note in result.notes)
