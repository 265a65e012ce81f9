"""One factory from a database URL to what it holds: the event store, the strategy tables, the
projections and their migrations.

`memory://` (throwaway), `sqlite:///PATH` (embedded default), `postgresql://...` (production)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from trading_engine.adapters.clocks.system import SystemClock
from trading_engine.adapters.eventstore.application import EventSourcedStore
from trading_engine.adapters.eventstore.memory import memory_event_store
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.adapters.projections.sqlite import sqlite_projection_store
from trading_engine.adapters.sql.connections import connect_postgres, connect_sqlite
from trading_engine.adapters.sql.migrations import migrate_postgres, migrate_sqlite
from trading_engine.adapters.sql.strategy_tables import PostgresStrategyTables, SqliteStrategyTables
from trading_engine.app.execution.orders import OrderService
from trading_engine.app.projections.runner import ProjectionRunner
from trading_engine.app.projections.tables import all_projections
from trading_engine.app.runtime.config import ConfigError
from trading_engine.ports.clock import Clock
from trading_engine.ports.event_store import EventStore
from trading_engine.ports.projections import LogWatcher, ProjectionStore

# The exchange clients, Redis, what only PostgreSQL uses, the health endpoint and the bar
# file reader (pandas) are imported by the functions that use them: a command loads what
# it uses, and `backtest`, `export` or `audit` no exchange client and no Redis (issue 16).
if TYPE_CHECKING:
    pass


def open_event_store(database_url: str) -> EventSourcedStore:
    scheme = urlsplit(database_url).scheme
    if scheme == "memory":
        return memory_event_store()
    if scheme == "sqlite":
        return sqlite_event_store(sqlite_path(database_url))
    if scheme in ("postgresql", "postgres"):
        from trading_engine.adapters.eventstore.postgres import postgres_event_store

        return postgres_event_store(database_url)
    raise ConfigError(f"DATABASE_URL: unsupported scheme {scheme!r}")


def sqlite_path(database_url: str) -> Path | str:
    """`sqlite:///relative/file`, `sqlite:////absolute/file` or `sqlite:///:memory:`."""
    path = database_url.removeprefix("sqlite://")
    if not path.startswith("/") or path == "/":
        raise ConfigError(f"DATABASE_URL: expected sqlite:///PATH, got {database_url!r}")
    path = path[1:]
    return path if path == ":memory:" else Path(path)


@dataclass
class Engine:
    """What the use cases run on, wired together."""

    store: EventStore
    clock: Clock
    orders: OrderService

    def close(self) -> None:
        self.store.close()


def bootstrap(database_url: str, clock: Clock | None = None) -> Engine:
    store = open_event_store(database_url)
    used_clock = clock or SystemClock()
    return Engine(store=store, clock=used_clock, orders=OrderService(store, used_clock))


def open_strategy_tables(database_url: str) -> PostgresStrategyTables | SqliteStrategyTables:
    """The ohlcv / signals tables in the `DATABASE_URL` database, migrated to the latest."""
    scheme = urlsplit(database_url).scheme
    if scheme == "sqlite":
        sqlite_conn = connect_sqlite(sqlite_path(database_url))
        migrate_sqlite(sqlite_conn)
        return SqliteStrategyTables(sqlite_conn)
    if scheme in ("postgresql", "postgres"):
        pg_conn = connect_postgres(database_url)
        migrate_postgres(pg_conn)
        return PostgresStrategyTables(pg_conn, reconnect=lambda: connect_postgres(database_url))
    raise ConfigError(
        f"DATABASE_URL: the bar and signal tables need sqlite:// or postgresql://, not {scheme}://"
    )


@dataclass
class ProjectionWiring:
    """The projections of one database: the log they read, the tables they write."""

    log: EventStore
    store: ProjectionStore
    watcher: LogWatcher | None
    runners: list[ProjectionRunner]

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
        self.store.close()
        self.log.close()


def projections(database_url: str, batch_size: int = 1000) -> ProjectionWiring:
    """Every projection of `DATABASE_URL` (migrated first), its log and its wake-up."""
    scheme = urlsplit(database_url).scheme
    if scheme not in ("sqlite", "postgresql", "postgres"):
        raise ConfigError(
            f"DATABASE_URL: projections need sqlite:// or postgresql://, not {scheme}://"
        )
    migrate(database_url)
    log = open_event_store(database_url)
    store: ProjectionStore
    watcher: LogWatcher | None = None
    if scheme == "sqlite":
        store = sqlite_projection_store(sqlite_path(database_url))
    else:
        from trading_engine.adapters.projections.postgres import (
            PostgresLogWatcher,
            postgres_projection_store,
        )

        store = postgres_projection_store(database_url)
        watcher = PostgresLogWatcher(database_url)
    runners = [ProjectionRunner(p, log, store, batch_size=batch_size) for p in all_projections(log)]
    return ProjectionWiring(log, store, watcher, runners)


def migrate(database_url: str) -> list[str]:
    """Apply pending migrations; returns the versions applied now."""
    scheme = urlsplit(database_url).scheme
    if scheme == "sqlite":
        sqlite_conn = connect_sqlite(sqlite_path(database_url))
        try:
            return migrate_sqlite(sqlite_conn)
        finally:
            sqlite_conn.close()
    if scheme in ("postgresql", "postgres"):
        with connect_postgres(database_url) as pg_conn:
            return migrate_postgres(pg_conn)
    raise ConfigError(f"DATABASE_URL: nothing to migrate for {scheme}://")


def backtest_tables(database_url: str) -> PostgresStrategyTables | SqliteStrategyTables:
    if urlsplit(database_url).scheme == "memory":  # nothing kept: tables in memory too
        conn = connect_sqlite(":memory:")
        migrate_sqlite(conn)
        return SqliteStrategyTables(conn)
    return open_strategy_tables(database_url)
