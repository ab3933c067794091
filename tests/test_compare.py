"""`droplab compare`: the plan, the MLflow tree, the table, repeats, resume and the report."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from droplab import metrics as M
from droplab import tracking
from droplab.compare import ComparisonFailed, members, plan, run_comparison
from droplab.compare_report import write_comparison_report
from droplab.config import Config, ConfigError, config_hash

from .conftest import tiny_config
from .study_helpers import by_kind, mlflow_runs

GRID = "compare.grid={model.dropout: [0.0, 0.5], model.width: [8, 16, 32]}"
SMALL = "compare.grid={model.dropout: [0.0, 0.5], model.width: [16]}"


def compare_config(tmp_path: Path, *overrides: str) -> Config:
    """Two seeds of two epochs on 800 rows: a comparison member takes a fraction of a second."""
    return tiny_config(
        tmp_path,
        "name=cmp",
        "compare.seeds=[0, 1]",
        "tracking.activations=false",
        "train.epochs=2",
        "data.rows=800",
        *overrides,
    )


def test_plan_puts_each_baseline_first_and_adds_missing_ones(tmp_path: Path) -> None:
    cells = plan(compare_config(tmp_path, GRID))
    # 2 x 3 grid: six cells, grouped by width, the dropout-0 baseline first in each group
    assert [c.label for c in cells] == [
        "p=0.00 w=8", "p=0.50 w=8", "p=0.00 w=16", "p=0.50 w=16", "p=0.00 w=32", "p=0.50 w=32"
    ]  # fmt: skip
    # every treated cell points at the baseline of its own width
    labels = {c.key: c.label for c in cells}
    assert {c.label: labels.get(c.baseline_key or "") for c in cells if c.baseline_key} == {
        "p=0.50 w=8": "p=0.00 w=8",
        "p=0.50 w=16": "p=0.00 w=16",
        "p=0.50 w=32": "p=0.00 w=32",
    }
    no_zero = plan(compare_config(tmp_path, "compare.grid={model.dropout: [0.3, 0.5]}"))
    # a grid without dropout 0 still gets its baseline (model.dropout 0.0 by default)
    assert [c.label for c in no_zero] == ["p=0.00", "p=0.30", "p=0.50"]
    assert no_zero[0].is_baseline and no_zero[0].overrides == {"model.dropout": 0.0}


def test_members_are_paired_by_seed(tmp_path: Path) -> None:
    cfg = compare_config(tmp_path, SMALL, "compare.seeds=[3, 4, 5]")
    todo = members(cfg, plan(cfg))
    # every cell runs every seed, and a member's config carries its seed
    assert sorted((m.cell.label, m.seed) for m in todo) == sorted(
        (label, s) for label in ("p=0.00 w=16", "p=0.50 w=16") for s in (3, 4, 5)
    )
    assert all(m.cfg.seed == m.seed and m.cfg.model.width == 16 for m in todo)
    # each (cell, seed) has its own identity: the config hash includes the seed
    assert len({config_hash(m.cfg) for m in todo}) == 6


@pytest.mark.parametrize(
    "grid, match",
    [
        ("compare.grid={}", "compare.grid"),
        ("compare.grid={study.n_trials: [1, 2]}", "study.n_trials"),
        ("compare.grid={seed: [1, 2]}", "seed"),
    ],
)
def test_bad_grid_is_refused_before_anything_is_written(
    tmp_path: Path, grid: str, match: str
) -> None:
    cfg = compare_config(tmp_path, grid)
    # an empty grid, or a key that is not a training setting, is one ConfigError line
    with pytest.raises(ConfigError, match=match):
        run_comparison(cfg)
    # and no store was created
    assert not (tmp_path / "runs").exists()


def _seed_metrics(runs: list) -> dict[str, Mapping[str, float]]:
    return {r.info.run_id: r.data.metrics for r in by_kind(runs, "seed")}


@pytest.mark.slow
def test_grid_builds_the_run_tree_and_the_table_equals_the_seed_runs(tmp_path: Path) -> None:
    cfg = compare_config(tmp_path, GRID)
    outcome = run_comparison(cfg)
    client, runs = mlflow_runs(cfg)
    parents, cells, seeds = (by_kind(runs, k) for k in ("comparison", "cell", "seed"))
    # one parent, one child per cell, one grandchild per (cell, seed)
    assert (len(parents), len(cells), len(seeds)) == (1, 6, 12)
    parent_id = parents[0].info.run_id
    assert all(c.data.tags[tracking.PARENT] == parent_id for c in cells)
    cell_of = {c.info.run_id: c.info.run_name for c in cells}
    assert all(s.data.tags[tracking.PARENT] in cell_of for s in seeds)
    # runs are named for what they are, and every one is closed FINISHED
    assert set(cell_of.values()) == {f"cell {c.label}" for c in outcome.cells}
    assert {s.info.run_name for s in seeds} == {"seed-0", "seed-1"}
    assert {r.info.status for r in runs} == {"FINISHED"}
    # each seed run has its per-epoch curve and its manifest
    first = seeds[0].info.run_id
    assert len(client.get_metric_history(first, M.GAP_LOSS)) == 2
    assert "manifest.json" in {a.path for a in client.list_artifacts(first)}
    # the comparison wrote its report
    assert outcome.report is not None
    _table_matches_seed_runs(outcome.report.seeds_csv, outcome.report.table_csv, runs)
    # the parent holds the table as CSV and Markdown, and the report pages
    top = {a.path for a in client.list_artifacts(parent_id)}
    assert {"table.csv", "table.md", "seeds.csv", "report"} <= top
    # `droplab report` rebuilds the same table from MLflow, without training
    again = write_comparison_report(cfg)
    assert again.table_csv.read_text() == outcome.report.table_csv.read_text()
    # one plain sentence per width, and images referenced by relative name
    assert [s.split(",")[0] for s in again.findings] == [
        "At width 8",
        "At width 16",
        "At width 32",
    ]
    assert "src='gap_curves.png'" in again.html.read_text()


def _table_matches_seed_runs(seeds_csv: Path, table_csv: Path, runs: list) -> None:
    by_run = _seed_metrics(runs)
    per_seed = pd.read_csv(seeds_csv)
    # every seed row is exactly what its MLflow run logged
    for row in per_seed.to_dict("records"):
        for key in M.SUMMARY_KEYS:
            assert row[key] == by_run[row["run_id"]][key]
    table = pd.read_csv(table_csv).set_index("cell")
    for cell, group in per_seed.groupby("cell"):
        # a cell's mean is the mean of its seed runs
        assert table.loc[cell, M.FINAL_GAP_LOSS] == pytest.approx(group[M.FINAL_GAP_LOSS].mean())
    treated = table[table["baseline"].notna()]
    for cell, row in treated.iterrows():
        gaps = per_seed[per_seed["cell"] == cell][M.FINAL_GAP_LOSS].to_numpy()
        base = per_seed[per_seed["cell"] == row["baseline"]][M.FINAL_GAP_LOSS].to_numpy()
        # the reduction is 1 - mean gap / mean baseline gap, paired over the same seeds
        expected = M.reduction(float(np.mean(gaps)), float(np.mean(base)))
        assert row[f"{M.FINAL_GAP_LOSS} reduction"] == pytest.approx(expected, nan_ok=True)


@pytest.mark.slow
def test_same_command_twice_gives_identical_numbers_and_resumes_a_failed_seed(
    tmp_path: Path,
) -> None:
    cfg = compare_config(tmp_path, SMALL)
    first = run_comparison(cfg)
    second = run_comparison(compare_config(tmp_path, SMALL, "name=cmp2"))  # trains afresh
    # both wrote a report; the second trained all four members again
    assert first.report is not None and second.report is not None and second.trained == 4
    # the same grid trained twice: identical tables, number for number
    assert first.report.table_csv.read_text() == second.report.table_csv.read_text()
    client, runs = mlflow_runs(cfg)
    lost = by_kind(runs, "seed")[0].info.run_id
    client.set_terminated(lost, "FAILED")  # as if that seed had crashed
    again = run_comparison(cfg)
    # the rerun trains only the seed whose run is not FINISHED, and reuses the rest
    assert (again.trained, again.reused) == (1, 3)
    # ... into the same parent, and with the same numbers
    _, runs = mlflow_runs(cfg)
    assert len(by_kind(runs, "comparison")) == 1 and len(by_kind(runs, "seed")) == 5
    assert again.report is not None  # the report is rewritten
    assert again.report.table_csv.read_text() == first.report.table_csv.read_text()


@pytest.mark.slow
def test_interrupted_comparison_resumes_without_redoing_finished_runs(tmp_path: Path) -> None:
    cfg = compare_config(tmp_path, SMALL)
    epochs_seen: list[int] = []

    def interrupt_third_member(epoch: int, values: Mapping[str, float]) -> None:
        epochs_seen.append(epoch)
        if len(epochs_seen) == 5:  # two members of two epochs done, third one started
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_comparison(cfg, hooks=[interrupt_third_member])
    _, runs = mlflow_runs(cfg)
    # nothing is left RUNNING: the interrupted seed run, the cells and the parent are FAILED
    assert "RUNNING" not in {r.info.status for r in runs}
    assert by_kind(runs, "comparison")[0].info.status == "FAILED"
    done = {r.info.run_id for r in by_kind(runs, "seed") if r.info.status == "FINISHED"}
    assert len(done) == 2
    outcome = run_comparison(cfg)
    # the rerun trains only the two missing (cell, seed) runs, and reuses the finished two
    assert (outcome.trained, outcome.reused) == (2, 2)
    # the finished runs of the first attempt are the ones in the table
    assert outcome.report is not None
    assert done <= set(pd.read_csv(outcome.report.seeds_csv)["run_id"])
    _, runs = mlflow_runs(cfg)
    # the same parent and cells, now FINISHED
    assert [r.info.status for r in by_kind(runs, "comparison")] == ["FINISHED"]
    assert {r.info.status for r in by_kind(runs, "cell")} == {"FINISHED"}


@pytest.mark.slow
def test_diverged_seeds_are_left_out_and_all_failing_is_an_error(tmp_path: Path) -> None:
    lrs = "compare.grid={model.dropout: [0.0, 0.5], train.lr: [0.001, 1e12]}"
    cfg = compare_config(tmp_path / "some", lrs, "train.optimizer=sgd")
    outcome = run_comparison(cfg)
    # the exploding learning rate fails its four seed runs; the comparison still finishes
    assert len(outcome.failed) == 4 and all("NonFiniteLoss" in f for f in outcome.failed)
    assert outcome.trained == 4
    _, runs = mlflow_runs(cfg)
    failed_cells = [r for r in by_kind(runs, "cell") if r.info.status == "FAILED"]
    # cells with no finished seed are closed FAILED with the reason
    assert len(failed_cells) == 2
    assert {r.data.tags[tracking.REASON] for r in failed_cells} == {"no seed run finished"}
    doomed = compare_config(
        tmp_path / "some", "name=doomed", "compare.grid={train.lr: [1e12]}", "train.optimizer=sgd"
    )
    # when every seed run fails the comparison says so, and its parent is FAILED
    with pytest.raises(ComparisonFailed, match="all 2 seed runs failed"):
        run_comparison(doomed)
    _, runs = mlflow_runs(doomed)
    assert by_kind(runs, "comparison")[0].info.status == "FAILED"
