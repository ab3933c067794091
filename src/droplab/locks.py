"""Locks between processes: a file lock beside local stores, a PostgreSQL advisory lock for
shared servers. Creating a store's tables and taking a study's trial slot both go through here.

Both wait for the lock as long as it takes and are exclusive. A file lock is ``flock`` on a
file that stays in place (:mod:`filelock`), so it holds between processes of one machine only;
an advisory lock holds wherever the server is reached from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

if TYPE_CHECKING:
    import sqlalchemy

# One key for every droplab process: creating Optuna's tables is rare and quick.
_SCHEMA_LOCK = int.from_bytes(b"droplab!", "big", signed=True)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold the lock on the file ``path`` (created, with its directory, when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path):
        yield


@contextlib.contextmanager
def advisory_lock(engine: sqlalchemy.Engine, key: int) -> Iterator[None]:
    """Hold PostgreSQL's advisory lock ``key`` on a connection of ``engine`` (session-level:
    it is released with the connection if this process dies)."""
    with engine.connect() as conn:
        conn.exec_driver_sql(f"SELECT pg_advisory_lock({key})")
        try:
            yield
        finally:
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")


@contextlib.contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """Serialise the creation of a store's tables (Optuna's, or MLflow's migrations): processes
    that open a fresh database at once otherwise fail with UniqueViolation on pg_type
    (PostgreSQL: CREATE TABLE IF NOT EXISTS is not atomic) or "table ... already exists"
    (SQLite). A file lock beside a SQLite file, an advisory lock on PostgreSQL."""
    if url.startswith("sqlite:///"):
        database = Path(url.removeprefix("sqlite:///"))
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(file_lock(database.parent / f".{database.name}.lock"))
            except OSError:  # an unwritable directory: the store's own check says so, in one line
                pass
            yield
        return
    if not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy  # here: only PostgreSQL stores pay for importing it

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with advisory_lock(engine, _SCHEMA_LOCK):
            yield
    finally:
        engine.dispose()
