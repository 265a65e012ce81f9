"""Reading the event log in large pages for a projection rebuild, decoded without the
library's per-event overhead.

`EventSourcedStore.read_log` goes through the library's mapper: rows as dicts, a
`Notification` per row, the aggregate id through `str` and back, and the transcoder's
recursive untagging of every value. That is about 12 µs an event, more than a rebuild can
afford for the whole of its work. Here the rows come as tuples (PostgreSQL: binary results,
so `bytea` and `uuid` need no text decoding) and a state is decoded in one pass over its
top-level values, which is all an order or position event holds (scalars, and tagged
Decimals, datetimes and UUIDs).

The result is the mapper's, exactly: anything this fast path does not handle as the mapper
would (a nested or untagged structure, an unknown tag, a class with upcasting, a cipher or
compressor, another transcoder) is decoded by the store's own mapper, and an event the mapper
cannot decode raises what it raises. A store of another kind is read through `read_log`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
from eventsourcing.persistence import Notification, find_id_convertor
from eventsourcing.utils import resolve_topic

if TYPE_CHECKING:
    from eventsourcing.postgres import PostgresApplicationRecorder
    from eventsourcing.sqlite import SQLiteApplicationRecorder

import trading_engine.adapters.eventstore.old_topics  # noqa: F401  (old logs' topics)
from trading_engine.adapters.eventstore.transcoder import OrjsonTranscoder
from trading_engine.ports.event_store import RecordedEvent

# OrjsonTranscoder's tags for the values an event holds (value objects appear in snapshots
# only, and a tag not listed here goes to the mapper).
_TAGGED: dict[str, Callable[[Any], Any]] = {
    "decimal_str": Decimal,
    "datetime_iso": datetime.fromisoformat,
    "uuid_hex": UUID,
}

Row = tuple[int, Any, int, str, bytes]  # notification_id, originator_id, version, topic, state


class _NotFast(Exception):
    """This state is not one the fast path decodes: the mapper does it."""


_UNSEEN = object()


class FastDecoder:
    """The store's mapper's `to_domain_event`, for flat event states, in one pass."""

    def __init__(self, log: Any) -> None:
        self._mapper = mapper = log.mapper
        self.enabled = (
            type(mapper.transcoder) is OrjsonTranscoder
            and not mapper.cipher
            and not mapper.compressor
        )
        self._classes: dict[str, tuple[type, Callable[[Any], Any]] | None] = {}

    def _cls(self, topic: str, originator_id: Any) -> tuple[type, Callable[[Any], Any]] | None:
        """The event class and the id conversion the mapper would use; None: the mapper's
        own path (a class that upcasts older versions of its events)."""
        cls = resolve_topic(topic)
        fast = None
        if self.enabled and getattr(cls, "class_version", 1) == 1:
            fast = (cls, find_id_convertor(cls, type(originator_id)))
        self._classes[topic] = fast
        return fast

    def page(self, rows: Iterable[Row]) -> list[RecordedEvent]:
        """One loop over the page (a function call per event is a tenth of the decoding)."""
        decoded: list[RecordedEvent] = []
        classes, tagged, loads = self._classes, _TAGGED, orjson.loads
        for position, originator_id, version, topic, data in rows:
            event = None
            found = classes.get(topic, _UNSEEN)
            if found is _UNSEEN:
                found = self._cls(topic, originator_id)
            if found is not None:
                try:
                    state = loads(data)
                    for key, value in state.items():  # not a dict: fails, the mapper's
                        kind = type(value)
                        if kind is dict:
                            tag = value.get("_type_")
                            if len(value) != 2 or tag not in tagged or "_data_" not in value:
                                raise _NotFast
                            state[key] = tagged[tag](value["_data_"])
                        elif kind is list:
                            raise _NotFast
                    state["originator_id"] = found[1](originator_id)
                    state["originator_version"] = version
                    state.pop("class_version", None)
                    event = object.__new__(found[0])
                    object.__setattr__(event, "__dict__", state)
                except Exception:  # anything unusual: the mapper decides (and raises)
                    event = None
            if event is None:
                event = self._mapper.to_domain_event(
                    Notification(
                        id=position,
                        originator_id=originator_id,
                        originator_version=version,
                        topic=topic,
                        state=data,
                    )
                )
            if type(originator_id) is not UUID:
                originator_id = UUID(str(originator_id))
            decoded.append(RecordedEvent(position, originator_id, version, topic, event))
        return decoded


def _instance(recorder: Any, module: str, name: str) -> bool:
    """`isinstance` without importing `module` (psycopg, for the PostgreSQL recorder): a
    recorder of a class never imported cannot be one (a backtest imports no psycopg)."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(recorder, getattr(loaded, name))


def log_pages(
    log: Any, after: int, upto: int, size: int, part: tuple[int, int] | None = None
) -> Iterator[list[RecordedEvent]]:
    """The events after position `after` up to `upto`, in pages of `size`, in log order.
    With `part` (k, n): only the events of aggregates in part k of n (PostgreSQL only), so
    that n processes can share a rebuild, each with whole aggregates."""
    recorder = getattr(log, "recorder", None)
    if _instance(recorder, "eventsourcing.postgres", "PostgresApplicationRecorder"):
        rows = _postgres_rows(recorder, part)
    elif part is not None:
        raise ValueError("the log is read in parts on PostgreSQL only")
    elif _instance(recorder, "eventsourcing.sqlite", "SQLiteApplicationRecorder"):
        rows = _sqlite_rows(recorder)
    else:
        yield from _read_log_pages(log, after, upto, size)
        return
    decode = FastDecoder(log).page
    while after < upto:
        page = rows(after, min(size, upto - after))
        if page and page[-1][0] > upto:  # past the head asked for (ids may have gaps)
            page = [row for row in page if row[0] <= upto]
        if not page:
            return
        yield decode(page)
        after = page[-1][0]


def _read_log_pages(log: Any, after: int, upto: int, size: int) -> Iterator[list[RecordedEvent]]:
    while after < upto:
        page = [e for e in log.read_log(after + 1, min(size, upto - after)) if e.position <= upto]
        if not page:
            return
        yield page
        after = page[-1].position


# No upper bound in the query: with one, the planner (on a table without statistics yet)
# may sort the whole rest of the log for every page instead of walking the index.


def _postgres_rows(
    recorder: PostgresApplicationRecorder, part: tuple[int, int] | None
) -> Callable[[int, int], list[Row]]:
    from psycopg.rows import tuple_row
    from psycopg.sql import SQL, Identifier

    # A part of the aggregates is a range of their ids (uniform: uuid4 and uuid5), so its
    # test is two comparisons of a UUID: a function of the id per row instead (its last
    # byte, say) cost 3.9 s of server CPU per part of a million events, the range 0.7 s.
    bounds: list[UUID] = []
    where = SQL("")
    if part is not None:
        k, n = part
        if k > 0:
            bounds.append(UUID(int=(k << 128) // n))
            where += SQL(" AND originator_id >= %s")
        if k < n - 1:
            bounds.append(UUID(int=((k + 1) << 128) // n))
            where += SQL(" AND originator_id < %s")
    statement = SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state "
        "FROM {table} WHERE notification_id > %s{where} ORDER BY notification_id LIMIT %s"
    ).format(table=Identifier(recorder.datastore.schema, recorder.events_table_name), where=where)

    def rows(after: int, size: int) -> list[Row]:
        with (
            recorder.datastore.get_connection() as conn,
            conn.cursor(binary=True, row_factory=tuple_row) as cursor,
        ):
            cursor.execute(statement, (after, *bounds, size))
            return cursor.fetchall()

    return rows


def _sqlite_rows(recorder: SQLiteApplicationRecorder) -> Callable[[int, int], list[Row]]:
    statement = (
        "SELECT rowid, originator_id, originator_version, topic, state "
        f"FROM {recorder.events_table_name} WHERE rowid > ? ORDER BY rowid LIMIT ?"
    )
    ids: dict[str, Any] = {}

    def originator(text: str) -> Any:
        found = ids.get(text)
        if found is None:
            if len(ids) > 100_000:
                ids.clear()
            found = ids[text] = recorder.convert_originator_id(text)
        return found

    def rows(after: int, size: int) -> list[Row]:
        # one transaction per page: a read held open across pages would keep SQLite's
        # writers (the staging tables, in the same file) waiting
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.execute(statement, (after, size))
            return [
                (row[0], originator(row[1]), row[2], row[3], row[4]) for row in cursor.fetchall()
            ]

    return rows
