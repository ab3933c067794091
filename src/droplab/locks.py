"""Locks between processes: a file lock beside local stores, a PostgreSQL advisory lock for
shared servers. Creating a store's tables and taking a study's trial slot both go through here.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

# One key for every droplab process: creating Optuna's tables is rare and quick.
_SCHEMA_LOCK = int.from_bytes(b"droplab!", "big", signed=True)


@contextlib.contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """Serialise the creation of a store's tables (Optuna's, or MLflow's migrations): processes
    that open a fresh database at once otherwise fail with UniqueViolation on pg_type
    (PostgreSQL: CREATE TABLE IF NOT EXISTS is not atomic) or "table ... already exists"
    (SQLite). A ``flock`` beside a SQLite file, an advisory lock on PostgreSQL."""
    if url.startswith("sqlite:///"):
        with _file_lock(Path(url.removeprefix("sqlite:///"))):
            yield
        return
    if not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({_SCHEMA_LOCK})")
            try:
                yield
            finally:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_SCHEMA_LOCK})")
    finally:
        engine.dispose()


@contextlib.contextmanager
def _file_lock(database: Path) -> Iterator[None]:
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        handle = open(database.parent / f".{database.name}.lock", "w")
    except OSError:  # an unwritable directory: the store's own check says so, in one line
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
