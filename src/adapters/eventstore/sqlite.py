"""SQLite event store: the embedded default, one file, no server.

Triggers make the events table append-only inside the database: an UPDATE or DELETE of a
recorded event aborts, whoever issues it.
"""

from __future__ import annotations

from pathlib import Path

from adapters.eventstore.application import EventSourcedStore

_REFUSAL = "trading-engine: the event log is append-only"


def sqlite_event_store(path: str | Path) -> EventSourcedStore:
    db_path = str(path)
    if db_path != ":memory:":
        Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    store = EventSourcedStore(
        {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": db_path,
            "SQLITE_LOCK_TIMEOUT": "10",
        }
    )
    table = store.recorder.events_table_name  # type: ignore[attr-defined]
    with store.recorder.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
        for operation in ("UPDATE", "DELETE"):
            cursor.execute(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{operation.lower()} "
                f"BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END"
            )
    return store
