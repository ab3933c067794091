"""Workers that never hurt (issue 17): pruning, sampling and ``study.workers: auto``.

Real Optuna studies on journal files in ``tmp_path``; the samplers and pruners are the ones
``droplab study`` builds (``space.sampler``, ``space.pruner``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import optuna
import pytest

from droplab.config import config_hash, study_storage
from droplab.config.schema import Config
from droplab.fit.cores import worker_count
from droplab.fit.trainer import thread_count
from droplab.study import space
from droplab.study.storage import open_storage, shared

from .study_helpers import study_config

SPACE = (
    "study.space={model.dropout: {type: float, low: 0.0, high: 0.8}, "
    "model.width: {type: int, low: 16, high: 1024, log: true}}"
)


def _study(tmp_path: Path, cfg: Config, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """A handle on the study in ``tmp_path``: what one process (with its sampler) holds."""
    return optuna.create_study(
        storage=open_storage(str(tmp_path / "s.journal")),
        study_name="w",
        direction="maximize",
        sampler=sampler,
        pruner=space.pruner(cfg),
        load_if_exists=True,
    )


def _score(params: dict[str, Any]) -> float:
    """A smooth objective with its optimum inside the space."""
    return -((params["model.dropout"] - 0.3) ** 2) - (math.log(params["model.width"]) - 5) ** 2


def _ask_tell(cfg: Config, studies: list[optuna.Study], n: int) -> list[dict[str, Any]]:
    """``n`` trials, asked by the handles in turn, each told before the next is asked."""
    out = []
    for i in range(n):
        study = studies[i % len(studies)]
        trial = study.ask()
        params = space.suggest(trial, cfg.study.space)
        study.tell(trial, _score(params))
        out.append(params)
    return out


def test_median_pruner_waits_for_finished_trials_not_for_started_ones(tmp_path: Path) -> None:
    cfg = study_config(tmp_path, "study.pruner=median", "study.startup_trials=2")
    cfg = cfg.model_copy(update={"study": cfg.study.model_copy(update={"warmup_epochs": 0})})
    study = _study(tmp_path, cfg, optuna.samplers.RandomSampler(seed=0))
    early = study.ask()  # started while no trial has finished: the "parallel" trial
    early.report(0.1, 0)
    # no finished trial yet: it cannot be pruned
    assert not early.should_prune()
    for _ in range(2):
        other = study.ask()
        for step in range(3):
            other.report(0.9, step)
        study.tell(other, 0.9)
    early.report(0.1, 1)
    # once startup_trials have finished, the trial that started before them is judged too:
    # Optuna's MedianPruner counts COMPLETE trials at each report, not when a trial starts
    assert early.should_prune()


def test_one_process_proposes_what_it_did_before(tmp_path: Path) -> None:
    cfg = study_config(tmp_path, SPACE, "study.sampler_seed=3")
    ours = _ask_tell(cfg, [_study(tmp_path / "a", cfg, space.sampler(cfg))], 14)
    before = optuna.samplers.TPESampler(seed=3, multivariate=True, constant_liar=False)
    theirs = _ask_tell(cfg, [_study(tmp_path / "b", cfg, before)], 14)
    # one process alone: the same proposals as the sampler droplab built before workers were
    # reworked, past TPE's 10 random start-up trials (constant_liar changes nothing alone)
    assert ours == theirs


def test_shared_proposals_depend_on_the_trial_not_on_the_process(tmp_path: Path) -> None:
    cfg = study_config(tmp_path, SPACE)
    alone = _ask_tell(cfg, [_study(tmp_path / "a", cfg, space.sampler(cfg, shared=True))], 14)
    handles = [_study(tmp_path / "b", cfg, space.sampler(cfg, shared=True)) for _ in range(2)]
    together = _ask_tell(cfg, handles, 14)
    # two processes taking turns propose what one process proposes, trial by trial
    assert together == alone
    # and no two trials of the study share a point
    assert len({tuple(p.values()) for p in together}) == 14


def test_processes_that_start_together_propose_different_points(tmp_path: Path) -> None:
    cfg = study_config(tmp_path, SPACE)
    handles = [_study(tmp_path, cfg, space.sampler(cfg, shared=True)) for _ in range(2)]
    trials = [h.ask() for h in handles]  # both RUNNING at once
    proposed = [space.suggest(t, cfg.study.space) for t in trials]
    # same seed, same history, yet different trials: different points
    assert proposed[0] != proposed[1]


def test_only_a_single_process_on_sqlite_keeps_one_sampler(tmp_path: Path) -> None:
    one = study_config(tmp_path)
    # one worker on SQLite: nobody else asks this study
    assert not shared(one, study_storage(one))
    # several workers, or a storage other machines reach: proposals are seeded per trial
    assert shared(study_config(tmp_path, "study.workers=2"), "x.journal")
    assert shared(one, "postgresql://h/db")


MAIN = ("study.n_trials=20", "train.epochs=20")  # the main study's budget


@pytest.mark.parametrize(
    ("overrides", "cores", "workers"),
    [
        (MAIN, 2, 2),  # the main study on 2 cores: a 1-thread worker per core
        ((*MAIN, "study.n_trials=4"), 2, 1),  # too few trials to share
        (MAIN, 16, 5),  # at least 4 trials a worker
        (("study.n_trials=8", "train.epochs=8"), 2, 1),  # too little work for a 2nd process
        (("study.n_trials=8", "train.epochs=8", "study.seeds=[0,1,2]"), 2, 2),  # 3x the work
        (("train.epochs=4",), 16, 1),  # 20 x 4 = 80 seed-epochs: one worker's worth
        (("train.epochs=8",), 16, 2),
        ((*MAIN, "train.threads=2"), 2, 1),  # threads asked for: cores / threads workers
        ((*MAIN, "train.device=cuda"), 2, 1),  # one device
    ],
)
def test_auto_workers_rule(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    overrides: tuple[str, ...],
    cores: int,
    workers: int,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    cfg = study_config(tmp_path, "study.workers=auto", "train.threads=0", *overrides)
    # the rule of droplab/fit/cores.py, and the cores shared out between the workers
    assert worker_count(cfg) == workers
    assert thread_count(cfg) == (cfg.train.threads or cores // workers)


def test_auto_keeps_the_config_hash_and_one_storage(tmp_path: Path) -> None:
    auto = study_config(tmp_path, "study.workers=auto")
    # study settings are not part of an experiment's identity
    assert config_hash(auto) == config_hash(study_config(tmp_path))
    # auto's default storage is the journal file, whatever it chooses on this machine
    assert study_storage(auto).endswith("optuna.journal")


def test_a_resumed_study_does_not_repeat_its_proposals(tmp_path: Path) -> None:
    cfg = study_config(tmp_path, SPACE)
    first = _ask_tell(cfg, [_study(tmp_path, cfg, space.sampler(cfg))], 4)
    # the same command again with a larger n_trials: a new process, a new sampler
    again = _ask_tell(cfg, [_study(tmp_path, cfg, space.sampler(cfg))], 4)
    # it goes on exploring instead of proposing the first process's random points again
    # (before, trials 4..7 were trials 0..3 once more)
    assert not {tuple(p.values()) for p in first} & {tuple(p.values()) for p in again}
