"""A database URL, read once: which backend it names and everything the engine keeps there.

`memory://` (throwaway: an event store in this process), `sqlite:///PATH` (the embedded
default; `sqlite:///:memory:` too) and `postgresql://...` (production; `?options=-csearch_path=`
or a `schema` query names the schema). Each method opens one thing in that database with the
adapter for its backend: the event store, the strategy tables, the projection tables and
their wake-up, the migrations, the log handler, and the two small queries the health
endpoint asks. Before, each of those dispatched on the URL's scheme again in the composition
root, with raw SQL among the wiring.

The heavy clients (psycopg, the PostgreSQL adapters) are imported only for a PostgreSQL URL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from trading_engine.adapters.eventstore.application import EventSourcedStore
    from trading_engine.adapters.logs.redaction import Redactor
    from trading_engine.adapters.sql.strategy_tables import (
        PostgresStrategyTables,
        SqliteStrategyTables,
    )
    from trading_engine.ports.projections import LogWatcher, ProjectionStore

Kind = Literal["memory", "sqlite", "postgres"]
_KINDS: dict[str, Kind] = {
    "memory": "memory",
    "sqlite": "sqlite",
    "postgresql": "postgres",
    "postgres": "postgres",
}


class UnsupportedDatabase(ValueError):
    """The URL names no database the engine can use, or not for what was asked."""


@dataclass(frozen=True)
class Database:
    url: str
    kind: Kind
    path: Path | str | None = None  # SQLite's file (or ":memory:")

    @classmethod
    def from_url(cls, url: str) -> Database:
        scheme = urlsplit(url).scheme
        kind = _KINDS.get(scheme)
        if kind is None:
            raise UnsupportedDatabase(f"DATABASE_URL: unsupported scheme {scheme!r}")
        return cls(url, kind, sqlite_path(url) if kind == "sqlite" else None)

    # ----- the event log ------------------------------------------------------------------

    def event_store(self) -> EventSourcedStore:
        if self.kind == "memory":
            from trading_engine.adapters.eventstore.memory import memory_event_store

            return memory_event_store()
        if self.kind == "sqlite":
            from trading_engine.adapters.eventstore.sqlite import sqlite_event_store

            return sqlite_event_store(self._path)
        from trading_engine.adapters.eventstore.postgres import postgres_event_store

        return postgres_event_store(self.url)

    # ----- tables -------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply pending migrations; returns the versions applied now."""
        from trading_engine.adapters.sql.connections import connect_postgres, connect_sqlite
        from trading_engine.adapters.sql.migrations import migrate_postgres, migrate_sqlite

        if self.kind == "sqlite":
            conn = connect_sqlite(self._path)
            try:
                return migrate_sqlite(conn)
            finally:
                conn.close()
        if self.kind == "postgres":
            with connect_postgres(self.url) as pg_conn:
                return migrate_postgres(pg_conn)
        raise UnsupportedDatabase("DATABASE_URL: nothing to migrate for memory://")

    def strategy_tables(self) -> PostgresStrategyTables | SqliteStrategyTables:
        """The ohlcv / signals tables, migrated to the latest. A `memory://` log keeps its
        tables in memory too (a backtest that keeps nothing)."""
        from trading_engine.adapters.sql.connections import connect_postgres, connect_sqlite
        from trading_engine.adapters.sql.migrations import migrate_postgres, migrate_sqlite
        from trading_engine.adapters.sql.strategy_tables import (
            PostgresStrategyTables,
            SqliteStrategyTables,
        )

        if self.kind in ("sqlite", "memory"):
            conn = connect_sqlite(self._path if self.kind == "sqlite" else ":memory:")
            migrate_sqlite(conn)
            return SqliteStrategyTables(conn)
        pg_conn = connect_postgres(self.url)
        migrate_postgres(pg_conn)
        return PostgresStrategyTables(pg_conn, reconnect=lambda: connect_postgres(self.url))

    def projection_store(self) -> ProjectionStore:
        if self.kind == "sqlite":
            from trading_engine.adapters.projections.sqlite import sqlite_projection_store

            return sqlite_projection_store(self._path)
        if self.kind == "postgres":
            from trading_engine.adapters.projections.postgres import postgres_projection_store

            return postgres_projection_store(self.url)
        raise UnsupportedDatabase(
            "DATABASE_URL: projections need sqlite:// or postgresql://, not memory://"
        )

    def log_watcher(self) -> LogWatcher | None:
        """What wakes the projections when events are appended (PostgreSQL's NOTIFY); None:
        they poll."""
        if self.kind != "postgres":
            return None
        from trading_engine.adapters.projections.postgres_watcher import PostgresLogWatcher

        return PostgresLogWatcher(self.url)

    def log_handler(self, redact: Redactor) -> logging.Handler | None:
        """The `engine_log` table's handler, or None where there is no table to write."""
        from trading_engine.adapters.logs.db_log import postgres_log_handler, sqlite_log_handler

        if self.kind == "postgres":
            return postgres_log_handler(self.url, redact)
        if self.kind == "sqlite":
            return sqlite_log_handler(str(self._path), redact)
        return None

    # ----- what the health endpoint asks ----------------------------------------------------

    def orders_by_status(self) -> dict[str, int]:
        """Orders in the orders read table, by state. A scrape must not wait on a rebuild's
        table swap: PostgreSQL gives up after 2 s."""
        if self.kind == "sqlite":
            from trading_engine.adapters.sql.connections import connect_sqlite

            conn = connect_sqlite(self._path)
            try:
                rows = conn.execute(
                    "SELECT status, COUNT(*) FROM orders GROUP BY status"
                ).fetchall()
            finally:
                conn.close()
            return {str(status): int(n) for status, n in rows}
        if self.kind == "memory":
            return {}
        import psycopg

        from trading_engine.adapters.sql.connections import split_schema

        url, schema = split_schema(self.url)
        query = psycopg.sql.SQL("SELECT status, COUNT(*) FROM {}.orders GROUP BY status").format(
            psycopg.sql.Identifier(schema)
        )
        with psycopg.connect(url, connect_timeout=2, options="-c statement_timeout=2000") as conn:
            return {str(status): int(n) for status, n in conn.execute(query).fetchall()}

    def answers(self) -> None:
        """Raises if the server does not answer within 2 s (PostgreSQL; a file always does)."""
        if self.kind != "postgres":
            return
        import psycopg

        from trading_engine.adapters.sql.connections import split_schema

        url, _ = split_schema(self.url)
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")

    @property
    def _path(self) -> Path | str:
        assert self.path is not None, "a SQLite URL has a path"
        return self.path


def sqlite_path(database_url: str) -> Path | str:
    """`sqlite:///relative/file`, `sqlite:////absolute/file` or `sqlite:///:memory:`."""
    path = database_url.removeprefix("sqlite://")
    if not path.startswith("/") or path == "/":
        raise UnsupportedDatabase(f"DATABASE_URL: expected sqlite:///PATH, got {database_url!r}")
    path = path[1:]
    return path if path == ":memory:" else Path(path)
