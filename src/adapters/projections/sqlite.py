"""SQLite projection store (the embedded default): the read tables, in the event store's file.

The same contract as the PostgreSQL store, on the library's `SQLiteTrackingRecorder` (its
`tracking` table holds each projection's position). SQLite has one writer at a time, so the
position check in `commit` cannot race. Staging copies are made from the live tables' own
`CREATE` statements; SQLite cannot rename an index, so the swap recreates the live indexes
under their names on the new tables.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import PersistenceError, Tracking
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder

from trading_engine.adapters.projections.log_stream import log_pages
from trading_engine.adapters.projections.row_sql import batches
from trading_engine.ports.event_store import RecordedEvent
from trading_engine.ports.projections import (
    PositionMoved,
    ProjectionStoreError,
    RowChange,
    TableState,
)

STAGING = "__staging"
EIGHT_PLACES = Decimal("1e-8")


def _convert(value: Any) -> Any:
    if isinstance(value, Decimal):
        # TEXT holding what PostgreSQL's DECIMAL(20, 8) would: 8 places, half away from zero
        return format(value.quantize(EIGHT_PLACES, ROUND_HALF_UP), "f")
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return value


class SqliteProjectionStore(SQLiteTrackingRecorder):
    def position(self, projection: str) -> int:
        return self.max_tracking_id(projection) or 0

    def commit(
        self,
        projection: str,
        changes: Sequence[RowChange],
        *,
        expected: int,
        position: int,
        staging: bool = False,
    ) -> None:
        name = projection + STAGING if staging else projection
        own = {c.table for c in changes}
        try:
            with self.datastore.transaction(commit=True) as cursor:
                current = self._lock_position(cursor, name)
                if current != expected:
                    raise PositionMoved(f"{name} is at {current}, not {expected}")
                for statement, rows in batches(
                    changes,
                    lambda t: f'"{t}{STAGING}"' if staging and t in own else f'"{t}"',
                    "?",
                    _convert,
                ):
                    cursor.executemany(statement, rows)
                self._insert_tracking(cursor, Tracking(name, position))
        except (sqlite3.Error, PersistenceError) as error:
            raise ProjectionStoreError(f"{type(error).__name__}: {error}") from error

    @staticmethod
    def _lock_position(cursor: Any, name: str) -> int:
        # A write first, so the transaction takes SQLite's write lock before it reads.
        cursor.execute("INSERT INTO tracking VALUES (?, 0) ON CONFLICT DO NOTHING", (name,))
        cursor.execute("SELECT notification_id FROM tracking WHERE application_name = ?", (name,))
        return int(cursor.fetchone()[0])

    @staticmethod
    def _set_position(cursor: Any, name: str, position: int) -> None:
        cursor.execute(
            "INSERT INTO tracking VALUES (?, ?) ON CONFLICT (application_name) "
            "DO UPDATE SET notification_id = excluded.notification_id",
            (name, position),
        )

    def start_staging(self, projection: str, tables: Sequence[str]) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            for table in reversed(tables):
                cursor.execute(f'DROP TABLE IF EXISTS "{table}{STAGING}"')
            for table in tables:
                create, indexes = _definitions(cursor, table)
                cursor.execute(_staged(create, table, tables))
                for index_name, index_sql in indexes:
                    staged = index_sql.replace(index_name, index_name + STAGING, 1)
                    cursor.execute(_staged(staged, table, tables))
            self._set_position(cursor, projection + STAGING, 0)

    def swap(
        self,
        projection: str,
        tables: Sequence[str],
        catch_up: Callable[[int], tuple[Sequence[RowChange], int]],
    ) -> int:
        staging = projection + STAGING
        try:
            with self.datastore.transaction(commit=True) as cursor:
                self._lock_position(cursor, projection)
                staged = self._lock_position(cursor, staging)
                changes, head = catch_up(staged)
                own = set(tables)
                for statement, rows in batches(
                    changes,
                    lambda t: f'"{t}{STAGING}"' if t in own else f'"{t}"',
                    "?",
                    _convert,
                ):
                    cursor.executemany(statement, rows)
                live_indexes = {t: _definitions(cursor, t)[1] for t in tables}
                for table in reversed(tables):
                    cursor.execute(f'DROP TABLE "{table}"')
                for table in tables:
                    for index_name, _ in _definitions(cursor, table + STAGING)[1]:
                        cursor.execute(f'DROP INDEX "{index_name}"')
                    cursor.execute(f'ALTER TABLE "{table}{STAGING}" RENAME TO "{table}"')
                    for _, index_sql in live_indexes[table]:
                        cursor.execute(index_sql)
                self._set_position(cursor, projection, head)
                cursor.execute("DELETE FROM tracking WHERE application_name = ?", (staging,))
        except (sqlite3.Error, PersistenceError) as error:
            raise ProjectionStoreError(f"swap of {projection} failed: {error}") from error
        return head

    # ----- a rebuild's bulk load (the runner's BulkLoading) --------------------------------

    def log_pages(
        self, log: Any, after: int, upto: int, size: int, part: tuple[int, int] | None = None
    ) -> Iterator[list[RecordedEvent]]:
        """The log's events after `after` up to `upto`, in pages (log_stream.py). No parts:
        this store opens in no other process (SQLite takes one writer at a time anyway)."""
        return log_pages(log, after, upto, size, part)

    def begin_load(self, projection: str, tables: Sequence[str]) -> None:
        """Nothing to do: SQLite checks no foreign keys here (the library leaves them off)."""

    def end_load(self, projection: str, tables: Sequence[str]) -> None:
        """Nothing to do (see `begin_load`)."""

    def load(
        self,
        projection: str,
        tables: Sequence[str],
        new: Sequence[RowChange],
        known: Sequence[RowChange],
        *,
        expected: int,
        position: int,
    ) -> None:
        """A rebuild's batch, written as `commit` writes it (SQLite is in-process: an upsert
        costs little more than an insert), tables in the order of `tables`."""
        rank = {table: n for n, table in enumerate(tables)}
        changes = sorted([*new, *known], key=lambda c: rank.get(c.table, len(rank)))
        self.commit(projection, changes, expected=expected, position=position, staging=True)

    def tables(self, names: Sequence[str]) -> list[TableState]:
        with self.datastore.transaction(commit=False) as cursor:
            states = []
            for name in names:
                cursor.execute(f'SELECT count(*) FROM "{name}"')
                states.append(TableState(name, int(cursor.fetchone()[0])))
            return states

    def rows(self, table: str, order_by: str = "id") -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(f'SELECT * FROM "{table}" ORDER BY "{order_by}"')
            columns = [d[0] for d in cursor.sqlite_cursor.description]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def close(self) -> None:
        self.datastore.close()


def _definitions(cursor: Any, table: str) -> tuple[str, list[tuple[str, str]]]:
    """The table's CREATE statement, and its explicitly created indexes (name, CREATE)."""
    cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
    found = cursor.fetchone()
    if found is None:
        raise ProjectionStoreError(f"no table {table!r}: run `trading-engine migrate` first")
    cursor.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
        "AND sql IS NOT NULL ORDER BY name",
        (table,),
    )
    return found[0], [(name, sql) for name, sql in cursor.fetchall()]


def _staged(statement: str, table: str, tables: Sequence[str]) -> str:
    """`statement` about `table` rewritten for the staging copies of `tables`."""
    statement = re.sub(
        rf'(CREATE TABLE\s+(?:IF NOT EXISTS\s+)?|\bON\s+)"?{re.escape(table)}"?(?=[\s(])',
        lambda m: f'{m.group(1)}"{table}{STAGING}"',
        statement,
        count=1,
    )
    for other in tables:
        statement = re.sub(
            rf'(REFERENCES\s+)"?{re.escape(other)}"?(?=\s*\()',
            lambda m, o=other: f'{m.group(1)}"{o}{STAGING}"',
            statement,
        )
    return statement


def sqlite_projection_store(path: str | Path) -> SqliteProjectionStore:
    store = SqliteProjectionStore(SQLiteDatastore(str(path), lock_timeout=10))
    store.create_table()
    return store
