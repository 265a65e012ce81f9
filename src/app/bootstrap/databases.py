"""One factory from a database URL to what it holds: the event store, the strategy tables, the
projections and their migrations.

`memory://` (throwaway), `sqlite:///PATH` (embedded default), `postgresql://...` (production)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from trading_engine.adapters.clocks.system import SystemClock
from trading_engine.adapters.eventstore.application import EventSourcedStore
from trading_engine.adapters.sql.database import Database, UnsupportedDatabase
from trading_engine.adapters.sql.strategy_tables import PostgresStrategyTables, SqliteStrategyTables
from trading_engine.app.execution.orders import OrderService
from trading_engine.app.projections.runner import ProjectionRunner
from trading_engine.app.projections.tables import all_projections
from trading_engine.app.runtime.config import ConfigError
from trading_engine.ports.clock import Clock
from trading_engine.ports.event_store import EventStore
from trading_engine.ports.projections import LogWatcher, ProjectionStore


@contextlib.contextmanager
def _config_errors() -> Iterator[None]:
    """A URL the adapters cannot use is a configuration error, said as such."""
    try:
        yield
    except UnsupportedDatabase as error:
        raise ConfigError(str(error)) from None


def database(database_url: str) -> Database:
    with _config_errors():
        return Database.from_url(database_url)


def open_event_store(database_url: str) -> EventSourcedStore:
    return database(database_url).event_store()


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
    db = database(database_url)
    if db.kind == "memory":
        raise ConfigError(
            "DATABASE_URL: the bar and signal tables need sqlite:// or postgresql://, not memory://"
        )
    return db.strategy_tables()


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
    db = database(database_url)
    if db.kind == "memory":
        raise ConfigError(
            "DATABASE_URL: projections need sqlite:// or postgresql://, not memory://"
        )
    db.migrate()
    log = db.event_store()
    store = db.projection_store()
    runners = [ProjectionRunner(p, log, store, batch_size=batch_size) for p in all_projections(log)]
    return ProjectionWiring(log, store, db.log_watcher(), runners)


def migrate(database_url: str) -> list[str]:
    """Apply pending migrations; returns the versions applied now."""
    with _config_errors():
        return database(database_url).migrate()


def backtest_tables(database_url: str) -> PostgresStrategyTables | SqliteStrategyTables:
    """A backtest's tables: in its database, or in memory when its log is `memory://`."""
    return database(database_url).strategy_tables()
