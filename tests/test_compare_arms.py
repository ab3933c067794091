"""`compare.arms`: named settings against a baseline arm, arms x grid, tags and the table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from droplab import metrics, tags
from droplab.compare.plan import plan
from droplab.compare.run import run_comparison
from droplab.config import Config

from .study_helpers import by_kind, mlflow_runs
from .test_compare import compare_config

ARMS = (
    "compare.arms={none: {model.dropout: 0.0}, dropout: {model.dropout: 0.5}, "
    "gauss: {model.dropout: 0.5, model.dropout_kind: gaussian}, "
    "wd: {train.weight_decay: 0.001}}"
)


def arms_config(tmp_path: Path, *overrides: str) -> Config:
    return compare_config(tmp_path, ARMS, "compare.baseline=none", *overrides)


def test_arms_plan_one_cell_per_arm_and_arms_times_grid(tmp_path: Path) -> None:
    cells = plan(arms_config(tmp_path))
    # one cell per arm, the baseline arm first, every other arm compared with it
    assert [c.label for c in cells] == ["none", "dropout", "gauss", "wd"]
    assert all(c.baseline_key == cells[0].key for c in cells[1:])
    # the arm is carried by the cell
    assert [c.arm for c in cells] == ["none", "dropout", "gauss", "wd"]
    grid = plan(arms_config(tmp_path, "compare.grid={model.width: [8, 16]}"))
    # arms x grid: each arm at each width, against the baseline arm at the same width
    assert [c.label for c in grid] == [
        "none w=8", "dropout w=8", "gauss w=8", "wd w=8",
        "none w=16", "dropout w=16", "gauss w=16", "wd w=16",
    ]  # fmt: skip
    labels = {c.key: c.label for c in grid}
    assert labels[grid[5].baseline_key or ""] == "none w=16"


@pytest.mark.slow
def test_arms_comparison_end_to_end(tmp_path: Path) -> None:
    cfg = arms_config(tmp_path)
    outcome = run_comparison(cfg)
    _, runs = mlflow_runs(cfg)
    parents, cells, seeds = (by_kind(runs, k) for k in ("comparison", "cell", "seed"))
    # one parent, one cell per arm, one seed run per (arm, seed)
    assert (len(parents), len(cells), len(seeds)) == (1, 4, 8)
    # cell runs are named after their arm and tagged with it; so are their seed runs
    assert {c.info.run_name for c in cells} == {
        "cell none",
        "cell dropout",
        "cell gauss",
        "cell wd",
    }
    assert {c.data.tags[tags.ARM] for c in cells} == {"none", "dropout", "gauss", "wd"}
    arm_of_cell = {c.info.run_id: c.data.tags[tags.ARM] for c in cells}
    assert all(s.data.tags[tags.ARM] == arm_of_cell[s.data.tags[tags.PARENT]] for s in seeds)
    # the gaussian arm cannot stack: its seed runs trained one by one
    gauss = [s for s in seeds if s.data.tags[tags.ARM] == "gauss"]
    assert all(tags.VECTORIZED not in s.data.tags for s in gauss)
    assert outcome.report is not None
    per_seed = pd.read_csv(outcome.report.seeds_csv)
    by_run = {s.info.run_id: s.data.metrics for s in seeds}
    # every seed row is what its run logged, calibration included
    for row in per_seed.to_dict("records"):
        for key in (*metrics.SUMMARY_KEYS, metrics.BEST_VAL_ECE):
            assert row[key] == by_run[row["run_id"]][key]
    table = pd.read_csv(outcome.report.table_csv).set_index("cell")
    for arm, group in per_seed.groupby("cell"):
        # an arm's row holds the mean of its seed runs (gap, AUPRC and ECE)
        for key in (metrics.FINAL_GAP_LOSS, metrics.BEST_VAL_AUPRC, metrics.BEST_VAL_ECE):
            assert table.loc[arm, key] == pytest.approx(group[key].mean())
    base = per_seed[per_seed["cell"] == "none"].set_index("seed")
    for arm in ("dropout", "gauss", "wd"):
        mine = per_seed[per_seed["cell"] == arm].set_index("seed")
        # the change in val ECE is the mean paired difference against the baseline arm
        diff = (mine[metrics.BEST_VAL_ECE] - base[metrics.BEST_VAL_ECE]).mean()
        assert table.loc[arm, f"{metrics.BEST_VAL_ECE} diff"] == pytest.approx(diff)
    # the Markdown table has one row per arm with the reductions, AUPRC and ECE changes
    md = outcome.report.table_markdown.read_text()
    assert all(f"| {arm} " in md for arm in ("none", "dropout", "gauss", "wd"))
    assert f"reduction ({metrics.BEST_GAP_LOSS})" in md and f"Δ {metrics.BEST_VAL_ECE}" in md
    # one finding per treated arm
    assert [f.split(":")[0] for f in outcome.report.findings] == ["dropout", "gauss", "wd"]
