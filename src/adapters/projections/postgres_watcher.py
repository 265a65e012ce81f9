"""What wakes the projections when events are appended to PostgreSQL's log: LISTEN on the
channel the event store NOTIFYs on every insert.
"""

from __future__ import annotations

import contextlib

import psycopg
from psycopg import sql

from trading_engine.adapters.eventstore.postgres import connection_string, postgres_env


class PostgresLogWatcher:
    """LISTEN on the event table's channel (the library NOTIFYs it on every insert), on a
    connection of its own. A notification can be lost (the connection dropped, a pooler in
    between), so `wait` always returns by its timeout, and a broken connection is reopened on
    the next call rather than ending the watch."""

    def __init__(self, database_url: str, channel: str = "ledger_events") -> None:
        self._conninfo = connection_string(postgres_env(database_url))
        self._channel = channel
        self._conn: psycopg.Connection | None = None

    def _connect(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self._conninfo, autocommit=True)
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            self._conn = conn
        return self._conn

    @property
    def backend_pid(self) -> int | None:
        """The server process of the LISTEN connection (what an operator would terminate)."""
        return None if self._conn is None or self._conn.closed else self._conn.info.backend_pid

    def wait(self, timeout: float) -> bool:
        try:
            for _ in self._connect().notifies(timeout=timeout, stop_after=1):
                return True
        except psycopg.OperationalError:
            self.close()  # reopened, and LISTENed again, on the next wait
        return False

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
