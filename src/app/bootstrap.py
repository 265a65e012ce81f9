"""The composition root: the one place that knows every concrete adapter.

Everything else receives ports. `DATABASE_URL` picks the event store:
`memory://` (throwaway), `sqlite:///PATH` (embedded default), `postgresql://...` (production).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from adapters.clocks.system import SystemClock
from adapters.eventstore.application import EventSourcedStore
from adapters.eventstore.memory import memory_event_store
from adapters.eventstore.postgres import postgres_event_store
from adapters.eventstore.sqlite import sqlite_event_store
from app.config import ConfigError
from app.orders import OrderService
from ports.clock import Clock
from ports.event_store import EventStore


def open_event_store(database_url: str) -> EventSourcedStore:
    scheme = urlsplit(database_url).scheme
    if scheme == "memory":
        return memory_event_store()
    if scheme == "sqlite":
        return sqlite_event_store(sqlite_path(database_url))
    if scheme in ("postgresql", "postgres"):
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
