"""An in-memory log with Redis Streams' consumer-group semantics, and the reader both share.

`InProcessLog` is the embedded default (no server): append-only streams, consumer groups,
pending-entry lists, claiming after an idle time, all behind one lock so the strategy and the
execution loops may run in threads over it. Its operations are named and behave like their
Redis counterparts (XADD, XGROUP CREATE, XREADGROUP, XACK, XAUTOCLAIM, XDEL); entry ids look
like Redis ids (`<n>-0`, one counter across all streams, so ids also order entries between
streams). Idle times use an injectable monotonic clock, so tests can move time by hand.

`StreamGroupReader` is the consumer-group logic that the Redis and the in-process sources
(and the signal subscribers) share, over a small `GroupTransport`: parse each entry, move the
malformed to the dead-letter stream (appended and acknowledged in one step) and count them,
hand out batches in id order, recover our own pending entries and then claim other consumers'
idle ones. Keeping it in one place is what makes the adapters behave identically.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import orjson

from trading_engine.adapters.marketdata.gmo_messages import (
    KNOWN_EXCHANGES,
    MalformedEntry,
    parse_entry,
    reason_kind,
)
from trading_engine.ports.market_data import MarketEntry, SourceStats

T = TypeVar("T")
log = logging.getLogger("trading_engine.streams")

RawEntry = tuple[str, str, Mapping[Any, Any]]
"""(stream, entry id, fields) as a transport returns it; empty fields = a deleted entry."""

DELETED_REASON = "deleted: the entry was deleted from the stream before it was acknowledged"


def id_key(entry_id: str) -> tuple[int, int]:
    """`<ms>-<seq>` as numbers, for ordering entries of several streams."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def dead_letter_fields(
    stream: str, entry_id: str, fields: Mapping[Any, Any], reason: str
) -> dict[str, str]:
    """The dead-letter entry: where it came from, why, and the original fields as JSON."""
    original = {_lenient_text(k): _lenient_text(v) for k, v in fields.items()}
    return {
        "source_stream": stream,
        "source_id": entry_id,
        "reason": reason,
        "fields": orjson.dumps(original).decode("utf-8"),
    }


def _lenient_text(value: object) -> str:
    """Bytes that are not UTF-8 are kept visibly as `\\xNN` escapes."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "backslashreplace")
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


# ----- the shared consumer-group reader -----------------------------------------------------


class GroupTransport(Protocol):
    """What a reader needs from a stream store, for one group, one consumer, fixed streams."""

    streams: tuple[str, ...]

    def ensure_groups(self) -> None:
        """Create the group on every stream (from its first entry) unless it exists."""

    def read_new(self, count: int, block_ms: int) -> list[RawEntry]:
        """Never-delivered entries, up to `count` per stream; `block_ms <= 0` does not wait."""
        ...

    def read_own_pending(self, stream: str, after_id: str, count: int) -> list[RawEntry]:
        """This consumer's pending entries with ids above `after_id`, delivered again."""
        ...

    def claim_idle(self, stream: str, cursor: str, count: int) -> tuple[str, list[RawEntry]]:
        """Pending entries idle past the reclaim time, now ours; and the next cursor (`0-0`
        when the scan is done)."""
        ...

    def dead_letter(self, entry: RawEntry, reason: str) -> None:
        """Append the dead-letter entry and acknowledge the original, atomically."""

    def ack(self, ids_by_stream: Mapping[str, Sequence[str]]) -> int:
        """Acknowledge; returns how many were pending."""
        ...

    def server_time_ms(self) -> float | None:
        """The store's clock, on the scale of the milliseconds in entry ids; None when ids
        carry no time (then an entry counts as entering its stream when it is read)."""
        ...


class Delivered(NamedTuple, Generic[T]):
    stream: str
    entry_id: str
    value: T
    entered_at: float | None = None  # time.monotonic() scale: when it entered its stream


class StreamGroupReader(Generic[T]):
    """Consumer-group reading with dead letters, shared by every stream source.

    `read` asks the store for up to `max_count` new entries on every stream and hands out
    at most `max_count`, in id order across streams; the rest are delivered (pending) already,
    so they are kept and handed out first next time rather than lost until a restart.
    """

    page_size = 500

    def __init__(
        self,
        transport: GroupTransport,
        parse: Callable[[str, Mapping[Any, Any]], T],
        malformed: type[Exception] | tuple[type[Exception], ...],
    ) -> None:
        self.transport = transport
        self.parse = parse
        self.malformed = malformed
        self.stats = SourceStats()
        self._rank = {stream: index for index, stream in enumerate(transport.streams)}
        self._buffer: list[Delivered[T]] = []
        self._groups_ready = False

    def _ensure_groups(self) -> None:
        if not self._groups_ready:
            self.transport.ensure_groups()
            self._groups_ready = True

    def _order(self, entry: Delivered[T]) -> tuple[int, int, int]:
        ms, seq = id_key(entry.entry_id)
        return ms, seq, self._rank.get(entry.stream, 0)

    def _entered_at(self) -> Callable[[str], float | None]:
        """When an entry entered its stream, on the monotonic scale: the id's milliseconds
        against the store's own clock read now, so no host clock is involved."""
        server_ms = self.transport.server_time_ms()
        if server_ms is None:
            return lambda _entry_id: None
        read_at = time.monotonic()
        return lambda entry_id: read_at - max(server_ms - id_key(entry_id)[0], 0.0) / 1000

    def _accept(self, raw: Sequence[RawEntry]) -> list[Delivered[T]]:
        accepted: list[Delivered[T]] = []
        entered_at = self._entered_at() if raw else (lambda _entry_id: None)
        for entry in raw:
            stream, entry_id, fields = entry
            try:
                if not fields:
                    raise _Deleted(DELETED_REASON)
                value = self.parse(stream, fields)
            except (_Deleted, *_as_tuple(self.malformed)) as error:
                reason = str(getattr(error, "reason", error))
            except Exception as error:
                # A parser bug or an input nobody foresaw: still never stop the consumer. The
                # entry is kept whole in the dead-letter stream, so nothing is lost for good.
                log.exception("unexpected error parsing %s %s; dead-lettered", stream, entry_id)
                reason = f"parse-error: {type(error).__name__}: {error}"
            else:
                accepted.append(Delivered(stream, entry_id, value, entered_at(entry_id)))
                continue
            self.transport.dead_letter(entry, reason)
            self.stats.dead_lettered += 1
            reasons = self.stats.dead_letter_reasons
            reasons[reason_kind(reason)] = reasons.get(reason_kind(reason), 0) + 1
        return accepted

    def read(self, max_count: int, block_ms: int) -> list[Delivered[T]]:
        if max_count < 1:
            raise ValueError(f"max_count must be at least 1, got {max_count}")
        self._ensure_groups()
        if len(self._buffer) < max_count:
            block = 0 if self._buffer else block_ms
            raw = self.transport.read_new(max_count - len(self._buffer), block)
            self._buffer.extend(self._accept(raw))
            self._buffer.sort(key=self._order)
        batch, self._buffer = self._buffer[:max_count], self._buffer[max_count:]
        self.stats.delivered += len(batch)
        return batch

    def recover(self) -> list[Delivered[T]]:
        """Our own pending entries (all streams), then other consumers' idle ones, in id order."""
        self._ensure_groups()
        self._buffer.clear()  # they are our pending entries: the scan below returns them
        seen: set[tuple[str, str]] = set()
        found: list[RawEntry] = []

        def keep(page: Iterable[RawEntry]) -> None:
            for entry in page:
                if (entry[0], entry[1]) not in seen:
                    seen.add((entry[0], entry[1]))
                    found.append(entry)

        for stream in self.transport.streams:
            after = "0"
            while page := self.transport.read_own_pending(stream, after, self.page_size):
                keep(page)
                after = page[-1][1]
        for stream in self.transport.streams:
            cursor = "0-0"
            while True:
                cursor, page = self.transport.claim_idle(stream, cursor, self.page_size)
                keep(page)
                if cursor in ("0-0", "0"):
                    break
        accepted = sorted(self._accept(found), key=self._order)
        self.stats.reclaimed += len(accepted)
        self.stats.delivered += len(accepted)
        return accepted

    def ack(self, refs: Iterable[tuple[str, str]]) -> None:
        ids_by_stream: dict[str, list[str]] = {}
        for stream, entry_id in refs:
            ids_by_stream.setdefault(stream, []).append(entry_id)
        if ids_by_stream:
            self.stats.acknowledged += self.transport.ack(ids_by_stream)

    def close(self) -> None:
        """Forget entries read but not handed out: they stay pending, `recover` returns them."""
        self._buffer.clear()


class _Deleted(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _as_tuple(
    kinds: type[Exception] | tuple[type[Exception], ...],
) -> tuple[type[Exception], ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


# ----- the in-memory log --------------------------------------------------------------------


@dataclass
class PendingEntry:
    entry_id: str
    consumer: str
    delivered_at: float  # the log's clock, seconds
    deliveries: int


@dataclass
class _Group:
    last_delivered: int = 0
    pending: dict[str, PendingEntry] = field(default_factory=dict)  # in id order


@dataclass
class _Stream:
    numbers: list[int] = field(default_factory=list)  # every id ever appended, ascending
    entries: dict[int, dict[Any, Any]] = field(default_factory=dict)  # live ones


class NoGroup(LookupError):
    """Like Redis' NOGROUP: the stream or the consumer group does not exist."""


class InProcessLog:
    """Append-only streams with consumer groups, in memory, thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._changed = threading.Condition(threading.Lock())
        self._streams: dict[str, _Stream] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._unique_keys: set[str] = set()
        self._last = 0

    # ----- writing ----------------------------------------------------------------------

    def append(self, stream: str, fields: Mapping[Any, Any]) -> str:
        """XADD: a new entry at the end of `stream`; returns its id."""
        with self._changed:
            return self._append(stream, fields)

    def append_unique(self, stream: str, key: str, fields: Mapping[Any, Any]) -> str | None:
        """Append unless `key` was used before (SET NX + XADD in one step); None if it was."""
        with self._changed:
            if key in self._unique_keys:
                return None
            entry_id = self._append(stream, fields)
            self._unique_keys.add(key)
            return entry_id

    def _append(self, stream: str, fields: Mapping[Any, Any]) -> str:
        if not fields:
            raise ValueError("an entry needs at least one field")
        self._last += 1
        log = self._streams.setdefault(stream, _Stream())
        log.numbers.append(self._last)
        log.entries[self._last] = dict(fields)
        self._changed.notify_all()
        return f"{self._last}-0"

    def delete(self, stream: str, *entry_ids: str) -> int:
        """XDEL: the entries are gone; pending references to them stay until acknowledged."""
        with self._changed:
            log = self._streams.get(stream)
            if log is None:
                return 0
            return sum(log.entries.pop(_number(i), None) is not None for i in entry_ids)

    # ----- reading without a group ------------------------------------------------------

    def entries(self, stream: str) -> list[tuple[str, dict[Any, Any]]]:
        """XRANGE - +: every live entry of the stream, oldest first."""
        with self._changed:
            log = self._streams.get(stream)
            if log is None:
                return []
            return [(f"{n}-0", dict(fields)) for n, fields in log.entries.items()]

    def length(self, stream: str) -> int:
        with self._changed:
            log = self._streams.get(stream)
            return 0 if log is None else len(log.entries)

    def streams(self) -> list[str]:
        with self._changed:
            return list(self._streams)

    # ----- consumer groups --------------------------------------------------------------

    def create_group(self, stream: str, group: str, start_id: str = "0") -> bool:
        """XGROUP CREATE ... MKSTREAM: False if the group exists. `$` starts after the end."""
        with self._changed:
            log = self._streams.setdefault(stream, _Stream())
            if (stream, group) in self._groups:
                return False
            if start_id == "$":
                start = log.numbers[-1] if log.numbers else 0
            else:
                start = _number(start_id)
            self._groups[(stream, group)] = _Group(last_delivered=start)
            return True

    def _group(self, stream: str, group: str) -> _Group:
        found = self._groups.get((stream, group))
        if found is None:
            raise NoGroup(f"NOGROUP no group {group!r} on stream {stream!r}")
        return found

    def read_group(
        self, group: str, consumer: str, streams: Sequence[str], count: int, block_ms: int = 0
    ) -> list[RawEntry]:
        """XREADGROUP ... STREAMS s1 s2 > >: up to `count` new entries per stream, now
        pending for `consumer`; waits up to `block_ms` (real time) if there are none."""
        deadline = time.monotonic() + max(block_ms, 0) / 1000
        with self._changed:
            while True:
                out: list[RawEntry] = []
                for stream in streams:
                    out.extend(self._deliver_new(stream, group, consumer, count))
                if out or block_ms <= 0:
                    return out
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return out
                self._changed.wait(remaining)

    def _deliver_new(self, stream: str, group: str, consumer: str, count: int) -> list[RawEntry]:
        state = self._group(stream, group)
        log = self._streams[stream]
        out: list[RawEntry] = []
        now = self._clock()
        position = bisect_right(log.numbers, state.last_delivered)
        for number in log.numbers[position:]:
            if len(out) >= count:
                break
            fields = log.entries.get(number)
            if fields is None:
                continue  # deleted before anyone read it
            entry_id = f"{number}-0"
            state.last_delivered = number
            state.pending[entry_id] = PendingEntry(entry_id, consumer, now, 1)
            out.append((stream, entry_id, dict(fields)))
        return out

    def read_pending(
        self, stream: str, group: str, consumer: str, after_id: str = "0", count: int = 100
    ) -> list[RawEntry]:
        """XREADGROUP ... STREAMS s <id>: the consumer's own pending entries after `after_id`,
        delivered again (deleted ones come back with empty fields)."""
        with self._changed:
            state = self._group(stream, group)
            log = self._streams[stream]
            after = _number(after_id)
            now = self._clock()
            out: list[RawEntry] = []
            for entry_id, pending in state.pending.items():
                if len(out) >= count:
                    break
                if pending.consumer != consumer or _number(entry_id) <= after:
                    continue
                pending.delivered_at, pending.deliveries = now, pending.deliveries + 1
                out.append((stream, entry_id, dict(log.entries.get(_number(entry_id), {}))))
            return out

    def autoclaim(
        self,
        stream: str,
        group: str,
        consumer: str,
        min_idle_ms: int,
        start_id: str = "0-0",
        count: int = 100,
    ) -> tuple[str, list[RawEntry]]:
        """XAUTOCLAIM: pending entries (of any consumer) idle at least `min_idle_ms`, from
        `start_id` on, become `consumer`'s; returns the next cursor (`0-0` when done) and them.
        Deleted entries are dropped from the pending list, as Redis 7 does."""
        with self._changed:
            state = self._group(stream, group)
            log = self._streams[stream]
            start = _number(start_id)
            now = self._clock()
            claimed: list[RawEntry] = []
            for entry_id in list(state.pending):
                if _number(entry_id) < start:
                    continue
                if len(claimed) >= count:
                    return entry_id, claimed
                pending = state.pending[entry_id]
                if (now - pending.delivered_at) * 1000 < min_idle_ms:
                    continue
                fields = log.entries.get(_number(entry_id))
                if fields is None:
                    del state.pending[entry_id]
                    continue
                pending.consumer, pending.delivered_at = consumer, now
                pending.deliveries += 1
                claimed.append((stream, entry_id, dict(fields)))
            return "0-0", claimed

    def ack(self, stream: str, group: str, *entry_ids: str) -> int:
        """XACK: returns how many of the entries were pending."""
        with self._changed:
            state = self._groups.get((stream, group))
            if state is None:
                return 0
            return sum(state.pending.pop(i, None) is not None for i in entry_ids)

    def append_and_ack(
        self, target: str, fields: Mapping[Any, Any], stream: str, group: str, entry_id: str
    ) -> str:
        """Dead-lettering in one step: append to `target` and acknowledge the original."""
        with self._changed:
            new_id = self._append(target, fields)
            state = self._groups.get((stream, group))
            if state is not None:
                state.pending.pop(entry_id, None)
            return new_id

    def pending(self, stream: str, group: str) -> list[PendingEntry]:
        """XPENDING ... - + n: the group's pending entries, in id order."""
        with self._changed:
            state = self._groups.get((stream, group))
            if state is None:
                return []
            return [PendingEntry(**vars(p)) for p in state.pending.values()]


def _number(entry_id: str) -> int:
    return id_key(entry_id)[0]


# ----- the in-process source ----------------------------------------------------------------


class InProcessTransport:
    """`GroupTransport` over an `InProcessLog`."""

    def __init__(
        self,
        log: InProcessLog,
        streams: Sequence[str],
        group: str,
        consumer: str,
        dead_letter_stream: str,
        reclaim_idle_ms: int = 30_000,
    ) -> None:
        self.streams = check_streams(streams)
        if reclaim_idle_ms < 0:
            raise ValueError(f"reclaim_idle_ms must not be negative, got {reclaim_idle_ms}")
        self.log, self.group, self.consumer = log, group, consumer
        self.dead_letter_stream, self.reclaim_idle_ms = dead_letter_stream, reclaim_idle_ms

    def ensure_groups(self) -> None:
        for stream in self.streams:
            self.log.create_group(stream, self.group, "0")

    def read_new(self, count: int, block_ms: int) -> list[RawEntry]:
        return self.log.read_group(self.group, self.consumer, self.streams, count, block_ms)

    def read_own_pending(self, stream: str, after_id: str, count: int) -> list[RawEntry]:
        return self.log.read_pending(stream, self.group, self.consumer, after_id, count)

    def claim_idle(self, stream: str, cursor: str, count: int) -> tuple[str, list[RawEntry]]:
        return self.log.autoclaim(
            stream, self.group, self.consumer, self.reclaim_idle_ms, cursor, count
        )

    def dead_letter(self, entry: RawEntry, reason: str) -> None:
        stream, entry_id, fields = entry
        self.log.append_and_ack(
            self.dead_letter_stream,
            dead_letter_fields(stream, entry_id, fields, reason),
            stream,
            self.group,
            entry_id,
        )

    def ack(self, ids_by_stream: Mapping[str, Sequence[str]]) -> int:
        return sum(self.log.ack(s, self.group, *ids) for s, ids in ids_by_stream.items())

    def server_time_ms(self) -> float | None:
        return None  # the log's ids are sequence numbers; its entries are read as they come


def check_streams(streams: Sequence[str]) -> tuple[str, ...]:
    if isinstance(streams, str):
        raise TypeError("streams must be a sequence of stream names, not one string")
    names = tuple(streams)
    if not names:
        raise ValueError("at least one stream is needed")
    if len(set(names)) != len(names):
        raise ValueError(f"streams repeat: {names}")
    return names


def market_entry(delivered: Delivered[Any]) -> MarketEntry:
    return MarketEntry(delivered.stream, delivered.entry_id, delivered.value, delivered.entered_at)


class InProcessSource:
    """`MarketDataSource` over an `InProcessLog`: the embedded default and the tests' twin."""

    def __init__(
        self,
        log: InProcessLog,
        streams: Sequence[str],
        group: str,
        consumer: str,
        dead_letter_stream: str,
        reclaim_idle_ms: int = 30_000,
        exchanges: Collection[str] = KNOWN_EXCHANGES,
    ) -> None:
        """`exchanges`: the exchange names whose entries carry GMO's messages (a backtest
        replays GMO's trades under its own run's name)."""
        self.log = log
        transport = InProcessTransport(
            log, streams, group, consumer, dead_letter_stream, reclaim_idle_ms
        )
        self._reader: StreamGroupReader[Any] = StreamGroupReader(
            transport, partial(parse_entry, exchanges=exchanges), MalformedEntry
        )

    def recover(self) -> list[MarketEntry]:
        return [market_entry(d) for d in self._reader.recover()]

    def read(self, max_count: int, block_ms: int) -> list[MarketEntry]:
        return [market_entry(d) for d in self._reader.read(max_count, block_ms)]

    def ack(self, entries: Sequence[MarketEntry]) -> None:
        self._reader.ack((e.stream, e.entry_id) for e in entries)

    @property
    def stats(self) -> SourceStats:
        return self._reader.stats

    def close(self) -> None:
        self._reader.close()
