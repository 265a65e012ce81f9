"""A store's database round trips, counted: a tracing hook on its connections.

For tests and benchmarks that state how many times a code path goes to the database (the
signal → order path: no read, one commit before the request). Every statement the store
sends is noted as a `Trip`, in order, with the thread that sent it:

* PostgreSQL: each statement on the store's pooled connections. The pool runs in autocommit
  mode and the insert function writes a whole save in one statement, so a save is one
  `commit`; any other statement is a `read`.
* SQLite (in-process, no network): each transaction the store opens, `commit` for a write
  transaction, `read` for a read one.

Callers add their own marks (`note("request")` from a broker wrapper, say) to the same
sequence, so a test can ask what happened between two of them. Statements of other
connections (the trading-control watch, projections, the log table) are not counted here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore

READ, COMMIT = "read", "commit"


@dataclass(frozen=True, slots=True)
class Trip:
    kind: str  # "read", "commit", or a caller's own mark
    thread: str
    at_ns: int  # time.monotonic_ns(): one clock for every process of the machine


class RoundTrips:
    """The trips noted so far (thread-safe: the store may be used from several threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.trips: list[Trip] = []

    def note(self, kind: str) -> None:
        trip = Trip(kind, threading.current_thread().name, time.monotonic_ns())
        with self._lock:
            self.trips.append(trip)

    def mark(self) -> int:
        """Where the sequence is now: `kinds(since=mark)` lists what happened after."""
        with self._lock:
            return len(self.trips)

    def kinds(self, since: int = 0, thread: str | None = None) -> list[str]:
        with self._lock:
            trips = self.trips[since:]
        return [t.kind for t in trips if thread is None or t.thread == thread]


def count_round_trips(store: Any, trips: RoundTrips | None = None) -> RoundTrips:
    """Start counting the round trips of `store` (an `EventSourcedStore` on PostgreSQL or
    SQLite; its snapshots share the connections); returns where they are noted."""
    trips = trips or RoundTrips()
    datastore = store.recorder.datastore
    if isinstance(datastore, PostgresDatastore):
        _trace_postgres(datastore, store.recorder.pg_function_name_insert_events, trips)
    elif isinstance(datastore, SQLiteDatastore):
        _trace_sqlite(datastore, trips)
    else:
        raise TypeError(f"no database connections to trace in {type(datastore).__name__}")
    return trips


def _trace_postgres(datastore: PostgresDatastore, insert_function: str, trips: RoundTrips) -> None:
    class CountingCursor(psycopg.Cursor):  # type: ignore[type-arg]
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            trips.note(_kind(query, self.connection, insert_function))
            return super().execute(query, *args, **kwargs)

        def executemany(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            trips.note(_kind(query, self.connection, insert_function))
            return super().executemany(query, *args, **kwargs)

    handed_out = datastore.get_connection

    @contextmanager
    def get_connection() -> Iterator[Any]:
        with handed_out() as conn:
            conn.cursor_factory = CountingCursor
            yield conn

    datastore.get_connection = get_connection  # type: ignore[method-assign]


def _kind(query: Any, conn: Any, insert_function: str) -> str:
    text = query if isinstance(query, str) else query.as_string(conn)
    return COMMIT if insert_function in text or text.lstrip()[:6].upper() == "INSERT" else READ


def _trace_sqlite(datastore: SQLiteDatastore, trips: RoundTrips) -> None:
    opened = datastore.transaction

    @contextmanager
    def transaction(*, commit: bool) -> Iterator[Any]:
        trips.note(COMMIT if commit else READ)
        with opened(commit=commit) as cursor:
            yield cursor

    datastore.transaction = transaction  # type: ignore[method-assign]
