"""One database URL, read once (adapters/sql/database.py): which backend it names, and every
store the engine keeps there opened by that backend's adapter, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from trading_engine.adapters.sql.database import Database, UnsupportedDatabase
from trading_engine.app.bootstrap.databases import database, projections
from trading_engine.app.runtime.config import ConfigError


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'engine.sqlite3'}"
    pg_url, pg_schema = request.getfixturevalue("pg_url"), request.getfixturevalue("pg_schema")
    return f"{pg_url}?schema={pg_schema}"


def test_the_kind_and_the_sqlite_file_come_from_the_url(tmp_path: Path) -> None:
    assert Database.from_url("memory://").kind == "memory"
    assert Database.from_url("postgresql://u@h:5432/db").kind == "postgres"
    assert Database.from_url("postgres://u@h:5432/db").kind == "postgres"
    sqlite = Database.from_url(f"sqlite:///{tmp_path}/x.sqlite3")
    assert (sqlite.kind, sqlite.path) == ("sqlite", tmp_path / "x.sqlite3")
    assert Database.from_url("sqlite:///:memory:").path == ":memory:"
    for bad in ("mysql://u@h/db", "sqlite://relative.db", "nonsense"):
        with pytest.raises(UnsupportedDatabase):
            Database.from_url(bad)
        with pytest.raises(ConfigError):  # the composition root says it as configuration
            database(bad)


def test_memory_keeps_an_event_store_and_tables_and_nothing_to_migrate() -> None:
    db = Database.from_url("memory://")
    db.event_store().close()
    db.strategy_tables().close()
    assert db.orders_by_status() == {}
    assert db.log_watcher() is None
    with pytest.raises(UnsupportedDatabase):
        db.migrate()
    with pytest.raises(UnsupportedDatabase):
        db.projection_store()


def test_every_store_opens_in_the_database_the_url_names(url: str) -> None:
    db = Database.from_url(url)
    applied = db.migrate()
    assert applied
    assert applied == sorted(applied)
    assert db.migrate() == []  # once
    store = db.event_store()
    store.close()
    db.strategy_tables().close()
    db.projection_store().close()
    assert db.orders_by_status() == {}  # the orders read table exists, empty
    db.answers()
    watcher = db.log_watcher()
    assert (watcher is not None) == (db.kind == "postgres")
    if watcher is not None:
        watcher.close()
    wiring = projections(url)
    assert wiring.runners
    wiring.close()
