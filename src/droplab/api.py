"""droplab from Python (a notebook, a script): the same code paths as the CLI, no subprocesses.

    from droplab.api import load_config, train, study, compare, report

    cfg = load_config("experiments/fraud_dropout_width.yaml", {"study.n_trials": 5})
    result = study(cfg)
    result.to_frame()          # one row per trial: params, summary metrics, state, run id

Results are typed; each has ``to_frame()`` giving a pandas DataFrame. Bad input raises
``droplab.config.ConfigError`` or ``droplab.data.errors.DataError`` (the CLI's exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from droplab import runtime
from droplab.compare.report import results_table, write_comparison_report
from droplab.compare.results import ComparisonOutcome
from droplab.compare.run import run_comparison
from droplab.config.load import load_config as _load
from droplab.config.schema import Config
from droplab.study.close import StudyOutcome
from droplab.study.report import write_report
from droplab.study.run import run as run_study
from droplab.study.trials import load_study, trials_frame
from droplab.tracking.runs import TrackedFit
from droplab.train import train as run_train


def load_config(
    experiment: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    **keys: Any,
) -> Config:
    """The resolved config: defaults <- ``experiment`` <- ``overrides`` (dotted keys) <- ``keys``
    (``model__dropout=0.5`` for ``model.dropout``), validated as the CLI validates it."""
    runtime.setup()
    dotted = {**(overrides or {}), **{k.replace("__", "."): v for k, v in keys.items()}}
    return _load(experiment, extra=dotted)


@dataclass(frozen=True)
class TrainResult:
    """One ``train`` run: its MLflow run id, summary metrics and per-epoch history."""

    run_id: str
    summary: dict[str, float]
    history: list[dict[str, float]]
    fit: TrackedFit

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch (from 1), one column per metric."""
        frame = pd.DataFrame(self.history)
        frame.index = pd.RangeIndex(1, len(frame) + 1, name="epoch")
        return frame


@dataclass(frozen=True)
class StudyResult:
    """One ``study`` invocation: what it ran now and every trial of the study so far."""

    outcome: StudyOutcome
    cfg: Config

    def to_frame(self) -> pd.DataFrame:
        """One row per trial: number, state, dropout, width, params, summary metrics, run id."""
        return trials_frame(load_study(self.cfg), self.cfg)


@dataclass(frozen=True)
class CompareResult:
    """One ``compare`` invocation: its cells' statistics."""

    outcome: ComparisonOutcome

    def to_frame(self) -> pd.DataFrame:
        """The results table: one row per cell (means, differences, reductions, p-values)."""
        return results_table(self.outcome.cells, self.outcome.stats)


def train(cfg: Config) -> TrainResult:
    """``droplab train``: one fit in one MLflow run."""
    runtime.setup()
    tracked = run_train(cfg)
    return TrainResult(tracked.run_id, tracked.result.summary, tracked.result.history, tracked)


def study(cfg: Config) -> StudyResult:
    """``droplab study``: create or resume the study and run it to ``study.n_trials``."""
    runtime.setup()
    return StudyResult(run_study(cfg), cfg)


def compare(cfg: Config) -> CompareResult:
    """``droplab compare``: the paired multi-seed comparison (resumes finished seed runs)."""
    runtime.setup()
    return CompareResult(run_comparison(cfg))


def report(cfg: Config) -> Path:
    """``droplab report``: write the report of the study (or of the comparison, when
    ``compare.grid`` is set); returns the HTML file."""
    runtime.setup()
    return write_comparison_report(cfg).html if cfg.compare.grid else write_report(cfg).html
