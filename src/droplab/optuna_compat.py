"""The one place that touches Optuna's private API.

droplab needs four things Optuna does not publish: the storage a ``Study`` writes through
(``Study._storage``), a trial's storage id (``_trial_id``), the ``RDBStorage`` behind the
caching wrapper a ``Study`` puts around it (``_CachedStorage._backend``), and the thread that
records a trial's heartbeat (``optuna.storages._heartbeat.get_heartbeat_thread``: ``optimize``
runs it, ``ask``/``tell`` does not). Each is looked up when used, and a lookup that an Optuna
upgrade broke raises :class:`OptunaMoved` naming what moved; ``tests/test_optuna_compat.py``
drives all four against a real study, so an upgrade that moves one fails there first.
"""

from __future__ import annotations

import importlib
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial


class OptunaMoved(RuntimeError):
    """An Optuna upgrade moved or renamed a private name that droplab relies on."""


def _moved(name: str) -> OptunaMoved:
    return OptunaMoved(
        f"{name} is gone in optuna {optuna.__version__}: droplab/optuna_compat.py needs its new "
        "place (tests/test_optuna_compat.py shows which lookups broke)"
    )


def _private(owner: object, name: str, spelled: str) -> Any:
    try:
        return getattr(owner, name)
    except AttributeError:
        raise _moved(spelled) from None


def _module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise _moved(name) from None


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage ``study`` reads and writes through (for an RDB URL, a caching wrapper)."""
    storage = _private(study, "_storage", "optuna.Study._storage")
    assert isinstance(storage, BaseStorage)
    return storage


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The id under which the storage knows ``trial`` (not its ``number``)."""
    return int(_private(trial, "_trial_id", f"{type(trial).__name__}._trial_id"))


def rdb_backend(storage: BaseStorage) -> RDBStorage | None:
    """The ``RDBStorage`` behind ``storage``: itself, or the one that Optuna's caching wrapper
    (what a ``Study`` holds) wraps; ``None`` for other storages (journal, in-memory)."""
    if isinstance(storage, RDBStorage):
        return storage
    cached = _private(optuna.storages, "_CachedStorage", "optuna.storages._CachedStorage")
    if not isinstance(storage, cached):
        return None
    backend = _private(storage, "_backend", "optuna.storages._CachedStorage._backend")
    return backend if isinstance(backend, RDBStorage) else None


def heartbeat(study: optuna.Study, trial: optuna.Trial) -> AbstractContextManager[None]:
    """A block that records ``trial``'s heartbeat from a thread while it runs, when ``study``'s
    storage has a heartbeat interval (RDB); that does nothing otherwise. A worker killed
    mid-trial stops beating, so a later start can tell that its trial is stale. Looked up
    here, not when the block starts: a moved name must stop the study, not fail its trial."""
    where = "optuna.storages._heartbeat"
    thread = _private(_module(where), "get_heartbeat_thread", f"{where}.get_heartbeat_thread")
    block: AbstractContextManager[None] = thread(trial_id(trial), storage_of(study))
    return block
