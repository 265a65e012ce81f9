"""SQLite event store: the embedded default, one file, no server.

Triggers make the events table append-only inside the database: an UPDATE or DELETE of a
recorded event aborts, whoever issues it. Each event's link in the hash chain (issue 7,
chain.py) is written by `ChainedSQLiteApplicationRecorder` in the insert's transaction, to
a side table `<events>_chain` that is append-only the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore

from trading_engine.adapters.eventstore.application import EventSourcedStore
from trading_engine.adapters.eventstore.chain import GENESIS, Link, link_hash

_REFUSAL = "trading-engine: the event log is append-only"


class ChainedSQLiteApplicationRecorder(SQLiteApplicationRecorder):
    """The library's SQLite recorder, plus one hash-chain link per event, same transaction."""

    def __init__(
        self, datastore: SQLiteDatastore, events_table_name: str = "stored_events"
    ) -> None:
        self.chain_table_name = f"{events_table_name}_chain"
        super().__init__(datastore, events_table_name)
        chain = self.chain_table_name
        self.insert_link_statement = f"INSERT INTO {chain} VALUES (?,?,?)"
        self.last_link_statement = (
            f"SELECT notification_id, previous_id, hash FROM {chain} "
            "ORDER BY notification_id DESC LIMIT 1"
        )
        self.select_links_statement = (
            f"SELECT notification_id, previous_id, hash FROM {chain} "
            "WHERE notification_id > ? AND notification_id <= ? ORDER BY notification_id LIMIT ?"
        )

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {self.chain_table_name} ("
            "notification_id INTEGER PRIMARY KEY, previous_id INTEGER, hash BLOB NOT NULL)",
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        # The INSERTs come first: they take SQLite's write lock, so the last link read next
        # is the last one committed by anyone (a read first would risk SQLITE_BUSY_SNAPSHOT).
        ids = super()._insert_events(c, stored_events, **kwargs)
        if not ids:
            return ids
        c.execute(self.last_link_statement)
        row = c.fetchone()
        previous, previous_hash = (row[0], bytes(row[2])) if row else (None, GENESIS)
        links = []
        for position, s in zip(ids, stored_events, strict=True):
            previous_hash = link_hash(
                previous_hash, position, s.originator_id, s.originator_version, s.topic, s.state
            )
            links.append((position, previous, previous_hash))
            previous = position
        c.executemany(self.insert_link_statement, links)
        return ids

    def last_link(self) -> Link | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.last_link_statement)
            row = c.fetchone()
        return None if row is None else Link(row[0], row[1], bytes(row[2]))

    def select_links(self, after: int, stop: int, limit: int) -> Sequence[Link]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.select_links_statement, (after, stop, limit))
            return [Link(row[0], row[1], bytes(row[2])) for row in c.fetchall()]


def sqlite_event_store(path: str | Path) -> EventSourcedStore:
    db_path = str(path)
    if db_path != ":memory:":
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    store = EventSourcedStore(
        {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": db_path,
            "SQLITE_LOCK_TIMEOUT": "10",
            "APPLICATION_RECORDER_TOPIC": (
                "trading_engine.adapters.eventstore.sqlite:ChainedSQLiteApplicationRecorder"
            ),
        }
    )
    recorder = store.recorder
    assert isinstance(recorder, ChainedSQLiteApplicationRecorder)
    with recorder.datastore.transaction(commit=True) as cursor:
        for table in (recorder.events_table_name, recorder.chain_table_name):
            for operation in ("UPDATE", "DELETE"):
                cursor.execute(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{operation.lower()} "
                    f"BEFORE {operation} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END"
                )
    return store
