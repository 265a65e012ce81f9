"""The seed's DBLogger: signals, orders, fills, rejections and errors into `engine_log`.

A logging handler, so the code that decides things only logs (with `event=` and
`correlation_id=`) and never waits on this table: records go to a queue and a writer thread
inserts them in batches. If the database is away the writer keeps the records and tries
again (stdout has them meanwhile); only past `capacity` unwritten records are the oldest
dropped, and counted. `close()` writes what is left before the process exits.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
import psycopg

from trading_engine.adapters.logs.json_lines import record_fields, record_time
from trading_engine.adapters.logs.redaction import Redactor
from trading_engine.adapters.sql.connections import connect_postgres, connect_sqlite

_INSERT = (
    "INSERT INTO engine_log (logged_at, level, logger, event, correlation_id, message, fields)"
    " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})"
)
Row = tuple[Any, ...]


class DatabaseLogHandler(logging.Handler):
    """Keeps records that carry an `event`, and every record at ERROR or above."""

    def __init__(
        self,
        connect: Callable[[], Any],
        placeholder: str,
        redact: Redactor,
        *,
        capacity: int = 50_000,
        batch: int = 500,
        retry_seconds: float = 1.0,
    ) -> None:
        super().__init__(level=logging.DEBUG)
        self._connect, self._sql = connect, _INSERT.format(p=placeholder)
        self._redact = redact
        self._rows: deque[Row] = deque()
        self._capacity, self._batch, self._retry = capacity, batch, retry_seconds
        self._wake = threading.Condition()
        self._closing = False
        self._give_up_at = float("inf")
        self._conn: Any = None
        self.written = 0
        self.dropped = 0
        self._writer = threading.Thread(target=self._write_forever, name="db-log", daemon=True)
        self._writer.start()

    # ----- logging side (any thread) -----------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "event", None)
        if event is None and record.levelno < logging.ERROR:
            return
        try:
            row = self._row(record, event or "error")
        except Exception:
            self.handleError(record)
            return
        with self._wake:
            if len(self._rows) >= self._capacity:
                self._rows.popleft()
                self.dropped += 1
            self._rows.append(row)
            self._wake.notify()

    def _row(self, record: logging.LogRecord, event: str) -> Row:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        fields = orjson.dumps(record_fields(record), default=str).decode()
        correlation = getattr(record, "correlation_id", None)
        return (
            record_time(record),
            record.levelname,
            record.name[:100],
            str(event)[:30],
            None if correlation is None else self._redact(str(correlation))[:200],
            self._redact(message),
            self._redact(fields),
        )

    # ----- writer thread -------------------------------------------------------------------

    def _write_forever(self) -> None:
        while True:
            with self._wake:
                while not self._rows and not self._closing:
                    self._wake.wait()
                if not self._rows and self._closing:
                    return
                batch = [self._rows[i] for i in range(min(self._batch, len(self._rows)))]
            if self._insert(batch):
                with self._wake:
                    for _ in batch:
                        self._rows.popleft()
                    self.written += len(batch)
            elif self._closing and time.monotonic() > self._give_up_at:
                return  # the database stayed away at exit: stdout has every record
            else:
                time.sleep(self._retry)

    def _insert(self, batch: list[Row]) -> bool:
        try:
            if self._conn is None:
                self._conn = self._connect()
            if isinstance(self._conn, sqlite3.Connection):
                with self._conn:  # SQLite keeps times as ISO text, like the other tables
                    self._conn.executemany(
                        self._sql, [(row[0].isoformat(), *row[1:]) for row in batch]
                    )
            else:
                with self._conn.cursor() as cursor:
                    cursor.executemany(self._sql, batch)
            return True
        except (psycopg.Error, sqlite3.Error, OSError):
            # Not logged through logging (it would come back here): the next try says it.
            self._drop_connection()
            return False

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                conn.close()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is left, trying for up to `timeout` seconds if the database is away."""
        with self._wake:
            self._closing = True
            self._give_up_at = time.monotonic() + timeout
            self._wake.notify()
        self._writer.join(timeout + 1)
        self._drop_connection()
        super().close()


def postgres_log_handler(database_url: str, redact: Redactor) -> DatabaseLogHandler:
    return DatabaseLogHandler(lambda: connect_postgres(database_url), "%s", redact)


def sqlite_log_handler(path: str, redact: Redactor) -> DatabaseLogHandler:
    return DatabaseLogHandler(lambda: connect_sqlite(path), "?", redact)
