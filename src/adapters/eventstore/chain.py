"""The event log's hash chain (issue 7): one sha256 per stored event, linked to the one before.

    hash_n = sha256(hash_prev || canonical(event_n)),  hash_prev of the first link = 32 zeros

`canonical` is the stored event as recorded, every field length-prefixed or fixed-width so no
byte can move from one field to the next: position (notification id, int64 big-endian),
originator id (UTF-8 of its text form, `str(uuid)`), originator version (int64), topic
(UTF-8) and the stored state bytes. PostgreSQL computes the very same bytes in a trigger
(postgres_recorder.py); SQLite and the in-memory store compute them here, in the insert's
transaction. Each link also keeps the position of the link before it, so a removed event
is named as such even when its link was removed with it (positions may have gaps: a
PostgreSQL sequence skips the ids of rolled-back inserts).

Verification is the same for every store: the events and the links are read in pages,
merged by position and the chain recomputed, in constant memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

from trading_engine.ports.event_store import ChainReport

GENESIS = bytes(32)
PAGE = 5000


class Link(NamedTuple):
    position: int
    previous: int | None  # position of the link before (None for the first link)
    hash: bytes


class ChainedRecorder(Protocol):
    """What a recorder with a chain offers (besides the library's `select_notifications`)."""

    def select_notifications(
        self, start: int | None, limit: int, stop: int | None = None
    ) -> Any: ...

    def max_notification_id(self) -> int | None: ...

    def select_links(self, after: int, stop: int, limit: int) -> Sequence[Link]:
        """Links with `after < position <= stop`, in order of position."""
        ...

    def last_link(self) -> Link | None: ...


def canonical(
    position: int, originator_id: object, version: int, topic: str, state: bytes
) -> bytes:
    oid = str(originator_id).encode()
    top = topic.encode()
    return b"".join(
        (
            position.to_bytes(8, "big", signed=True),
            len(oid).to_bytes(4, "big"),
            oid,
            version.to_bytes(8, "big", signed=True),
            len(top).to_bytes(4, "big"),
            top,
            len(state).to_bytes(4, "big"),
            state,
        )
    )


def link_hash(
    previous: bytes, position: int, originator_id: object, version: int, topic: str, state: bytes
) -> bytes:
    return hashlib.sha256(
        previous + canonical(position, originator_id, version, topic, state)
    ).digest()


def head_of(recorder: ChainedRecorder) -> tuple[int, str] | None:
    last = recorder.last_link()
    return None if last is None else (last.position, last.hash.hex())


def verify(
    recorder: ChainedRecorder,
    progress: Callable[[int, int], None] | None = None,
    page: int = PAGE,
) -> ChainReport:
    """Recompute the chain over the whole log, up to the last event recorded when it starts.

    Events before the first link were recorded before the chain existed: they are counted
    as unhashed, and the chain starts at the first link. After it, every event must have a
    link, every link an event, and every hash must match.
    """
    stop = recorder.max_notification_id() or 0
    events = _events(recorder, stop, page)
    links = _links(recorder, stop, page)
    event = next(events, None)
    link = next(links, None)
    previous_hash, previous_position = GENESIS, None
    checked = unhashed = 0
    start: int | None = None

    def report(ok: bool, mismatch: Any = None, reason: str = "") -> ChainReport:
        return ChainReport(
            ok=ok,
            checked=checked,
            head=None if previous_position is None else (previous_position, previous_hash.hex()),
            first_mismatch=None if mismatch is None else mismatch.position,
            reason=reason,
            start=start,
            unhashed=unhashed,
            aggregate_id=None if mismatch is None else mismatch.originator_id,
            version=None if mismatch is None else mismatch.originator_version,
            topic=None if mismatch is None else mismatch.topic,
        )

    while event is not None or link is not None:
        if link is None or (event is not None and event.id < link.position):
            assert event is not None
            if start is None:
                unhashed += 1  # recorded before the chain began
                event = next(events, None)
                continue
            return report(False, _Named(event), "hash missing: the event has no link")
        if event is None or link.position < event.id:
            gone = _Named(None, link.position)
            return report(False, gone, "event missing: its link remains, the event is gone")
        # the same position in both: recompute this link
        if start is None:
            start = link.position
        if link.previous != previous_position:
            return report(
                False,
                _Named(event),
                f"event missing: this event's link follows position {link.previous}, "
                f"which is gone (the last event verified is {previous_position})",
            )
        expected = link_hash(
            previous_hash, event.id, event.originator_id, event.originator_version,
            event.topic, event.state,
        )  # fmt: skip
        if expected != link.hash:
            return report(False, _Named(event), "state changed: the stored event's bytes differ")
        previous_hash, previous_position = expected, event.id
        checked += 1
        if progress is not None and checked % page == 0:
            progress(event.id, stop)
        event, link = next(events, None), next(links, None)
    if progress is not None:
        progress(stop, stop)
    return report(True)


class _Named:
    """The event a report names (position, aggregate id, version, topic)."""

    def __init__(self, event: Any, position: int | None = None) -> None:
        self.position = event.id if event is not None else position
        self.originator_id = str(event.originator_id) if event is not None else None
        self.originator_version = event.originator_version if event is not None else None
        self.topic = event.topic if event is not None else None


def _events(recorder: ChainedRecorder, stop: int, page: int) -> Iterator[Any]:
    start = 1
    while start <= stop:
        batch = recorder.select_notifications(start=start, limit=page, stop=stop)
        if not batch:
            return
        yield from batch
        start = batch[-1].id + 1


def _links(recorder: ChainedRecorder, stop: int, page: int) -> Iterator[Link]:
    after = 0
    while after < stop:
        batch = recorder.select_links(after, stop, page)
        if not batch:
            return
        yield from batch
        after = batch[-1].position
