"""Closing a study invocation: the parent run's summary, config, best model and report."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from droplab import metrics, tags
from droplab.compare.stats import mean_ci
from droplab.config.identity import mask_secrets, public_dict
from droplab.config.schema import Config
from droplab.study import storage
from droplab.study.report import write_report
from droplab.study.trials import best_trials, load_trial_model, top_trials
from droplab.tracking.runs import failure_reason, log_activations
from droplab.tracking.store import Tracker


class StudyFailed(RuntimeError):
    """Every trial this invocation started failed; the message names the first reason."""


@dataclass
class StudyOutcome:
    """What one ``droplab study`` invocation did and where the results are."""

    name: str
    storage: str
    parent_run_id: str | None
    started: int
    failed_now: list[str]
    counts: dict[str, int]
    top: list[dict[str, Any]]
    seconds: float
    report: Path | None = None
    notes: list[str] = field(default_factory=list)


def summarize_study(
    cfg: Config,
    study: optuna.Study,
    tracker: Tracker,
    parent_id: str | None,
    url: str,
    new: list[FrozenTrial],
    seconds: float,
) -> StudyOutcome:
    """Write the study summary to its parent run and close it; returns the closing table."""
    trials = study.get_trials(deepcopy=False)
    failed = [t for t in new if t.state == TrialState.FAIL]
    outcome = StudyOutcome(
        name=study.study_name,
        storage=mask_secrets(url),
        parent_run_id=parent_id,
        started=len(new),
        counts=_counts(trials),
        top=top_trials(study, cfg),
        seconds=seconds,
        failed_now=[
            f"trial {t.number}: {t.user_attrs.get(tags.FAIL_REASON, '?')}" for t in failed
        ],
    )
    if new and len(failed) == len(new):
        if parent_id is not None:
            tracker.end(parent_id, tags.FAILED, tags.FAIL, outcome.failed_now[0])
        raise StudyFailed(f"all {len(new)} trials failed; first: {outcome.failed_now[0]}")
    if parent_id is None:
        return outcome
    _log_summary(cfg, study, tracker, parent_id, url)
    outcome.report = _log_report(cfg, outcome)
    tracker.end(parent_id, tags.FINISHED, tags.COMPLETE)
    return outcome


def _counts(trials: list[FrozenTrial]) -> dict[str, int]:
    counts = {
        s.name: 0
        for s in (
            TrialState.COMPLETE,
            TrialState.PRUNED,
            TrialState.FAIL,
            TrialState.RUNNING,
            TrialState.WAITING,
        )
    }
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def _log_summary(
    cfg: Config,
    study: optuna.Study,
    tracker: Tracker,
    parent_id: str,
    url: str,
) -> None:
    # Every worker closes the one parent run. Read the trials and write their summary under
    # the study's lock: the last writer then has seen at least as many finished trials as any
    # earlier one (outside it, a worker that counted 99 could write after one that counted 100).
    with storage.slot_lock(study, url, cfg):
        counts = _counts(study.get_trials(deepcopy=False))
        values = {metrics.study_count(state): float(n) for state, n in counts.items()}
        best = best_trials(study)
        if best:
            for objective, value in zip(cfg.study.objectives, best[0].values, strict=True):
                values[metrics.study_best(objective)] = value
            values.update(best_over_seeds(cfg, best[0]))
            labels = {f"{tags.BEST_PREFIX}{k}": str(v) for k, v in best[0].params.items()}
            labels[f"{tags.BEST_PREFIX}trial_number"] = str(best[0].number)
            tracker.set_tags(parent_id, labels)
        tracker.log_metrics(parent_id, values)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        resolved = public_dict(cfg)
        path.write_text(yaml.safe_dump(resolved, sort_keys=False))
        tracker.log_artifact(parent_id, path)
    if best and best[0].user_attrs.get(tags.MODEL):
        _log_best_model(cfg, tracker, parent_id, best[0])


def best_over_seeds(cfg: Config, trial: FrozenTrial) -> dict[str, float]:
    """With ``study.seeds``: the trial's mean of each objective over seeds and its 95% CI."""
    per_seed = trial.user_attrs.get(tags.SEED_VALUES) or {}
    out: dict[str, float] = {}
    for i, objective in enumerate(cfg.study.objectives if per_seed else ()):
        ci = mean_ci([float(v[i]) for v in per_seed.values()])
        out.update(
            zip(metrics.study_best_ci(objective), (ci.estimate, ci.low, ci.high), strict=True)
        )
    return out


def _log_best_model(cfg: Config, tracker: Tracker, parent_id: str, trial: FrozenTrial) -> None:
    """Rebuild the best trial's network from its saved weights and log it from the trial's run
    (a LoggedModel with the trial's params and metrics), shown on the parent too; with its
    activations picture on the trial's own run (trials skip it: 0.2 s each)."""
    best = load_trial_model(cfg, tracker, trial)
    run_id = trial.user_attrs[tags.RUN_ID]
    if cfg.tracking.activations:
        log_activations(tracker, run_id, best.model, best.data.x_val, best.cfg.seed)
    tracker.log_model(run_id, best.model, best.data.x_val[:5], shown_on=[parent_id])


def _log_report(cfg: Config, outcome: StudyOutcome) -> Path | None:
    """The report (its own module logs the files to the parent run)."""
    try:
        return write_report(cfg).html
    except Exception as exc:  # a report problem must not lose a finished study
        outcome.notes.append(f"report not written: {failure_reason(exc)}")
        return None
