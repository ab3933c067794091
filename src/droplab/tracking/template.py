"""A new SQLite MLflow store, copied from an empty one that was migrated once per MLflow version.

MLflow creates a SQLite store by running every schema migration: about 1,100 ``fdatasync``
calls, ~0.9 s of a short ``droplab train`` on an idle disk and seconds on a busy one, paid by
every new ``paths.runs``. The first store a machine creates for an MLflow version is migrated
as before, into a template under the user's cache folder; every later new store is a copy of
it. The template holds MLflow's tables and its schema version and nothing else: its
``Default`` experiment (whose artifact location names the folder of the process that made it)
is deleted, and MLflow creates it again, for the copy's own place, when the copy opens.
Where the cache cannot be written, MLflow migrates the new store in place, as before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from droplab.locks import file_lock


def cache_dir() -> Path:
    """``$DROPLAB_CACHE``, else ``$XDG_CACHE_HOME/droplab``, else ``~/.cache/droplab``."""
    if folder := os.environ.get("DROPLAB_CACHE"):
        return Path(folder)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "droplab"


def seed_sqlite_store(database: Path) -> bool:
    """Give the missing SQLite file ``database`` the tables of a new MLflow store, copied from
    the template; ``False`` (nothing written) where the template cannot be had. The caller
    holds the store's schema lock, so no other process creates ``database`` meanwhile."""
    if database.exists():
        return False
    try:
        _copy_atomically(_template(), database)
    except Exception:  # noqa: BLE001 - no writable cache, no home, a failed migration: MLflow
        return False  # then migrates the store itself, and reports its own error if it fails
    return True


def _template() -> Path:
    folder = cache_dir()
    template = folder / f"mlflow-{metadata.version('mlflow')}-store.db"
    if not _empty_store(template):
        with file_lock(folder / f".{template.name}.lock"):
            if not _empty_store(template):  # missing, or damaged since: made again
                with _partial(template) as partial:
                    _migrate(partial)
                    os.replace(partial, template)
    return template


def _empty_store(path: Path) -> bool:
    """Whether ``path`` is a migrated MLflow store without experiments (a template)."""
    if not path.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            versions = db.execute("SELECT version_num FROM alembic_version").fetchall()
            experiments = db.execute("SELECT COUNT(*) FROM experiments").fetchone()
    except sqlite3.Error:
        return False
    return len(versions) == 1 and experiments == (0,)


def _migrate(path: Path) -> None:
    """An empty, fully migrated MLflow store at ``path``, less its ``Default`` experiment."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{path}", str(path.parent / "unused-artifacts"))
    store.engine.dispose()
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("DELETE FROM experiment_tags WHERE experiment_id = 0")
        db.execute("DELETE FROM experiments WHERE experiment_id = 0")


def _copy_atomically(source: Path, target: Path) -> None:
    """``target`` appears whole or not at all (a copy killed half-way leaves no store)."""
    with _partial(target) as partial:
        shutil.copyfile(source, partial)
        os.replace(partial, target)


@contextlib.contextmanager
def _partial(target: Path) -> Iterator[Path]:
    """A scratch path beside ``target``, removed on the way out unless it was renamed."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        yield partial
    finally:
        partial.unlink(missing_ok=True)
