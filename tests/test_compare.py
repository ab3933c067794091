"""`droplab compare`: the plan, the MLflow tree, the table, repeats, resume and the report."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from droplab import metrics, tags
from droplab.compare.plan import members, plan
from droplab.compare.report import write_comparison_report
from droplab.compare.results import ComparisonFailed, ComparisonOutcome
from droplab.compare.run import run_comparison
from droplab.config import Config, ConfigError, config_hash, tracking_uri
from droplab.replay import replay
from droplab.tags import SEED, STACK_SIZE, VECTORIZED

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
    assert all(c.data.tags[tags.PARENT] == parent_id for c in cells)
    cell_of = {c.info.run_id: c.info.run_name for c in cells}
    assert all(s.data.tags[tags.PARENT] in cell_of for s in seeds)
    # runs are named for what they are, and every one is closed FINISHED
    assert set(cell_of.values()) == {f"cell {c.label}" for c in outcome.cells}
    assert {s.info.run_name for s in seeds} == {"seed-0", "seed-1"}
    assert {r.info.status for r in runs} == {"FINISHED"}
    # each seed run has its per-epoch curve and its manifest
    first = seeds[0].info.run_id
    assert len(client.get_metric_history(first, metrics.GAP_LOSS)) == 2
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
        for key in metrics.SUMMARY_KEYS:
            assert row[key] == by_run[row["run_id"]][key]
    table = pd.read_csv(table_csv).set_index("cell")
    for cell, group in per_seed.groupby("cell"):
        # a cell's mean is the mean of its seed runs
        assert table.loc[cell, metrics.FINAL_GAP_LOSS] == pytest.approx(
            group[metrics.FINAL_GAP_LOSS].mean()
        )
    treated = table[table["baseline"].notna()]
    for cell, row in treated.iterrows():
        gaps = per_seed[per_seed["cell"] == cell][metrics.FINAL_GAP_LOSS].to_numpy()
        base = per_seed[per_seed["cell"] == row["baseline"]][metrics.FINAL_GAP_LOSS].to_numpy()
        # the reduction is 1 - mean gap / mean baseline gap, paired over the same seeds
        expected = metrics.reduction(float(np.mean(gaps)), float(np.mean(base)))
        assert row[f"{metrics.FINAL_GAP_LOSS} reduction"] == pytest.approx(expected, nan_ok=True)


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
    cfg = compare_config(tmp_path, SMALL, "compare.vectorize=false")  # one fit at a time
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
    assert {r.data.tags[tags.REASON] for r in failed_cells} == {"no seed run finished"}
    doomed = compare_config(
        tmp_path / "some", "name=doomed", "compare.grid={train.lr: [1e12]}", "train.optimizer=sgd"
    )
    # when every seed run fails the comparison says so, and its parent is FAILED
    with pytest.raises(ComparisonFailed, match="all 2 seed runs failed"):
        run_comparison(doomed)
    _, runs = mlflow_runs(doomed)
    assert by_kind(runs, "comparison")[0].info.status == "FAILED"


# -- compare.vectorize: stacked members give the same runs and numbers as one fit each ------


def _tree(runs: list) -> list[tuple[str, str, str, str]]:
    """Every run as (kind, name, its parent's name, status): the shape of the run tree."""
    names = {r.info.run_id: r.info.run_name for r in runs}
    return sorted(
        (
            r.data.tags[tags.KIND],
            r.info.run_name,
            names.get(r.data.tags.get(tags.PARENT, ""), ""),
            r.info.status,
        )
        for r in runs
    )


def _seed_numbers(cfg: Config) -> dict[tuple[str, str], dict[str, list[float]]]:
    """Per (cell, seed): every per-epoch metric and summary metric its seed run logged."""
    client, runs = mlflow_runs(cfg)
    cells = {r.info.run_id: r.info.run_name for r in by_kind(runs, "cell")}
    out = {}
    for r in by_kind(runs, "seed"):
        key = (cells[r.data.tags[tags.PARENT]], r.data.tags[SEED])
        curves = {k: [m.value for m in client.get_metric_history(r.info.run_id, k)]
                  for k in metrics.EPOCH_KEYS}  # fmt: skip
        out[key] = {**curves, **{k: [r.data.metrics[k]] for k in metrics.SUMMARY_KEYS}}
    return out


@pytest.mark.slow
def test_vectorized_comparison_equals_one_fit_per_seed_and_resumes(tmp_path: Path) -> None:
    cfgs = {
        on: compare_config(tmp_path / str(on), SMALL, f"compare.vectorize={str(on).lower()}")
        for on in (True, False)
    }
    outcomes: dict[bool, ComparisonOutcome] = {on: run_comparison(c) for on, c in cfgs.items()}
    reports = {on: o.report for on, o in outcomes.items()}
    assert reports[True] is not None and reports[False] is not None
    # the same table, number for number, whether the seeds trained stacked or one by one
    assert reports[True].table_csv.read_text() == reports[False].table_csv.read_text()
    # every seed run logged the same per-epoch curves and summary, bit for bit
    assert _seed_numbers(cfgs[True]) == _seed_numbers(cfgs[False])
    trees = {on: _tree(mlflow_runs(cfgs[on])[1]) for on in (True, False)}
    # the same MLflow tree: parent, cells, seed runs, names and states
    assert trees[True] == trees[False]
    client, runs = mlflow_runs(cfgs[True])
    seeds = by_kind(runs, "seed")
    # the four members of width 16 trained as one stack, and their runs say so
    assert {(r.data.tags.get(VECTORIZED), r.data.tags.get(STACK_SIZE)) for r in seeds} == {
        ("true", "4")
    }
    manifest = json.loads(
        (Path(client.download_artifacts(seeds[0].info.run_id, "manifest.json"))).read_text()
    )
    assert manifest["vectorized"] == {"stacked": True, "stack_size": 4}
    # and `droplab replay` reruns a stacked member with fit alone: every number matches
    assert replay(seeds[0].info.run_id, tracking_uri(cfgs[True])).matched
    # one fit per seed tags nothing
    _, sequential = mlflow_runs(cfgs[False])
    assert all(VECTORIZED not in r.data.tags for r in sequential)
    for on in (True, False):
        again = run_comparison(cfgs[on])
        # the same command again trains nothing, in both modes, and writes the same table
        assert (again.trained, again.reused) == (0, 4)
        assert again.report is not None
        assert again.report.table_csv.read_text() == reports[on].table_csv.read_text()


@pytest.mark.slow
def test_a_failing_member_fails_its_seed_run_alone(tmp_path: Path) -> None:
    cfg = compare_config(tmp_path, SMALL)  # the four members train as one stack
    failed: list[int] = []

    def fail_first_member(epoch: int, values: Mapping[str, float]) -> None:
        if not failed:  # the first member to finish an epoch: p=0.00 seed-0
            failed.append(epoch)
            raise RuntimeError("boom")

    outcome = run_comparison(cfg, hooks=[fail_first_member])
    # one seed run failed with its reason, as a fit that raised does; the three others
    # (trained in the same stack) finished and made the table
    assert outcome.failed == ["p=0.00 w=16 seed-0: RuntimeError: boom"]
    assert (outcome.trained, outcome.reused) == (3, 0)
    client, runs = mlflow_runs(cfg)
    seeds = by_kind(runs, "seed")
    assert sorted(r.info.status for r in seeds) == ["FAILED", "FINISHED", "FINISHED", "FINISHED"]
    bad = next(r for r in seeds if r.info.status == "FAILED")
    assert bad.data.tags[tags.REASON] == "RuntimeError: boom"
    # it logged the one epoch it completed before its hook raised, as a failed fit does
    assert len(client.get_metric_history(bad.info.run_id, metrics.GAP_LOSS)) == 1


@pytest.mark.slow
def test_an_interrupted_stack_leaves_no_seed_run_and_the_rerun_trains_it(
    tmp_path: Path,
) -> None:
    cfg = compare_config(tmp_path, SMALL)

    def interrupt(epoch: int, values: Mapping[str, float]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_comparison(cfg, hooks=[interrupt])
    _, runs = mlflow_runs(cfg)
    # a stack's runs are created once it has trained: none exists, none is left RUNNING
    assert by_kind(runs, "seed") == [] and "RUNNING" not in {r.info.status for r in runs}
    assert by_kind(runs, "comparison")[0].info.status == "FAILED"
    outcome = run_comparison(cfg)
    # the same command trains the whole stack, into the same parent
    assert (outcome.trained, outcome.reused) == (4, 0)
    _, runs = mlflow_runs(cfg)
    assert [r.info.status for r in by_kind(runs, "comparison")] == ["FINISHED"]
