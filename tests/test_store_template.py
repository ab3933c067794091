"""A new SQLite MLflow store is a copy of a template migrated once per MLflow version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from droplab.tracking.connect import make_tracker
from droplab.tracking.template import seed_sqlite_store

from .conftest import tiny_config


def _rows(database: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(database) as db:
        return db.execute(query).fetchall()


def test_new_stores_are_copies_of_one_template_that_holds_no_experiment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("DROPLAB_CACHE", str(cache))
    first = make_tracker(tiny_config(tmp_path / "a", "paths.runs=" + str(tmp_path / "a")))
    run = first.start("a run", "train", {}, None)
    first.log_metrics(run, {"x": 1.5})
    first.end(run, "FINISHED", "finished")
    templates = list(cache.glob("mlflow-*-store.db"))
    # one template, migrated to MLflow's schema version, with no experiment in it
    assert len(templates) == 1 and not list(cache.glob("*.partial"))
    assert _rows(templates[0], "SELECT COUNT(*) FROM experiments") == [(0,)]
    (version,) = _rows(templates[0], "SELECT version_num FROM alembic_version")
    second_db = tmp_path / "b" / "mlflow.db"
    second_db.parent.mkdir()
    assert seed_sqlite_store(second_db)
    # the copy has the template's schema version; opening it makes the Default experiment
    # (for the copy's own folder) and ours, and a run logs into it
    assert _rows(second_db, "SELECT version_num FROM alembic_version") == [version]
    second = make_tracker(tiny_config(tmp_path / "b", "paths.runs=" + str(tmp_path / "b")))
    names = {n for (n,) in _rows(second_db, "SELECT name FROM experiments")}
    assert "Default" in names and len(names) == 2
    run = second.start("another", "train", {}, None)
    second.log_metrics(run, {"x": 2.5})
    second.end(run, "FINISHED", "finished")
    assert second.get_run(run).metrics["x"] == 2.5
    # the first store's run is untouched, and a store that exists is never overwritten
    assert not seed_sqlite_store(second_db)
    assert _rows(second_db, "SELECT COUNT(*) FROM runs") == [(1,)]


def test_an_unwritable_cache_leaves_the_migration_to_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("DROPLAB_CACHE", str(blocker / "cache"))
    database = tmp_path / "runs" / "mlflow.db"
    database.parent.mkdir()
    # no template can be made: nothing is written, and the store still opens (migrated)
    assert not seed_sqlite_store(database) and not database.exists()
    tracker = make_tracker(tiny_config(tmp_path, "paths.runs=" + str(database.parent)))
    run = tracker.start("a run", "train", {}, None)
    tracker.end(run, "FINISHED", "finished")
    assert _rows(database, "SELECT COUNT(*) FROM runs") == [(1,)]


def test_a_damaged_template_is_made_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("DROPLAB_CACHE", str(cache))
    assert seed_sqlite_store(tmp_path / "first.db")
    (template,) = cache.glob("mlflow-*-store.db")
    template.write_bytes(b"not a database")
    # the next new store is whole all the same, and the template is an empty store again
    database = tmp_path / "runs" / "mlflow.db"
    database.parent.mkdir()
    assert seed_sqlite_store(database)
    assert _rows(template, "SELECT COUNT(*) FROM experiments") == [(0,)]
    tracker = make_tracker(tiny_config(tmp_path, "paths.runs=" + str(database.parent)))
    run = tracker.start("a run", "train", {}, None)
    tracker.end(run, "FINISHED", "finished")
    assert _rows(database, "SELECT COUNT(*) FROM runs") == [(1,)]
