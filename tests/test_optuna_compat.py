"""``droplab.optuna_compat``: each lookup of Optuna's private API, on a real SQLite study.

An Optuna upgrade that moves one of them fails here, with :class:`OptunaMoved` naming it.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from droplab.optuna_compat import OptunaMoved, heartbeat, rdb_backend, storage_of, trial_id

HEARTBEAT = 1  # seconds; the grace period is as long, so a silent trial is stale soon


@pytest.fixture
def rdb(tmp_path: Path) -> RDBStorage:
    return RDBStorage(
        f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=HEARTBEAT, grace_period=HEARTBEAT
    )


@pytest.fixture
def study(rdb: RDBStorage) -> optuna.Study:
    return optuna.create_study(storage=rdb, study_name="compat")


def test_storage_of_is_what_the_study_writes_through(study: optuna.Study) -> None:
    storage = storage_of(study)
    study_id = storage.get_study_id_from_name("compat")
    storage.set_study_user_attr(study_id, "written", "through the storage")
    # what is written through the storage is what the study reads
    assert study.user_attrs == {"written": "through the storage"}


def test_trial_id_is_the_id_the_storage_knows(study: optuna.Study) -> None:
    trial = study.ask()
    storage_of(study).set_trial_user_attr(trial_id(trial), "key", 1)
    frozen = study.get_trials(deepcopy=False)[0]
    # the live trial and its frozen record carry the same id, the one the storage accepts
    assert trial_id(frozen) == trial_id(trial)
    assert frozen.user_attrs == {"key": 1}


def test_rdb_backend_finds_the_rdb_storage_behind_the_cache(
    study: optuna.Study, rdb: RDBStorage, tmp_path: Path
) -> None:
    # a study holds Optuna's caching wrapper; the RDBStorage behind it is found
    assert storage_of(study) is not rdb
    assert rdb_backend(storage_of(study)) is rdb
    assert rdb_backend(rdb) is rdb
    # the heartbeat interval it reports is what stale-trial recovery checks
    assert rdb.get_heartbeat_interval() == HEARTBEAT
    journal = JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
    # a journal file or memory has no RDBStorage behind it
    assert rdb_backend(storage_of(optuna.create_study(storage=journal))) is None
    assert rdb_backend(storage_of(optuna.create_study())) is None


def test_heartbeat_marks_a_trial_that_stops_beating_stale(study: optuna.Study) -> None:
    beaten, _silent = study.ask(), study.ask()
    with heartbeat(study, beaten):
        pass  # the thread records one heartbeat before it stops
    time.sleep(HEARTBEAT + 1.2)  # past the grace period (SQLite's clock counts whole seconds)
    optuna.storages.fail_stale_trials(study)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    # a trial that beat and then stopped is failed; one that never beat is not judged
    assert states == [TrialState.FAIL, TrialState.RUNNING]


def test_heartbeat_does_nothing_on_a_journal(tmp_path: Path) -> None:
    journal = JournalStorage(JournalFileBackend(str(tmp_path / "optuna.journal")))
    study = optuna.create_study(storage=journal)
    trial = study.ask()
    with heartbeat(study, trial):
        pass
    # no heartbeat on a journal: the trial is left as it was
    assert study.get_trials(deepcopy=False)[0].state == TrialState.RUNNING


def test_a_moved_name_is_named(study: optuna.Study, monkeypatch: pytest.MonkeyPatch) -> None:
    # what an upgrade that renames each of them would raise: the name that moved
    with pytest.raises(OptunaMoved, match=r"optuna\.Study\._storage"):
        storage_of(object())  # type: ignore[arg-type]
    with pytest.raises(OptunaMoved, match=r"object\._trial_id"):
        trial_id(object())  # type: ignore[arg-type]
    module = importlib.import_module("optuna.storages._heartbeat")
    monkeypatch.delattr(module, "get_heartbeat_thread")
    with pytest.raises(OptunaMoved, match=r"optuna\.storages\._heartbeat\.get_heartbeat_thread"):
        heartbeat(study, study.ask())
    monkeypatch.delattr(storage_of(study), "_backend")
    with pytest.raises(OptunaMoved, match=r"_CachedStorage\._backend"):
        rdb_backend(storage_of(study))
