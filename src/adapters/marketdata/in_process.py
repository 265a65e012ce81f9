"""An in-memory log with Redis Streams' consumer-group semantics, and its source.

`InProcessLog` is the embedded default (no server): append-only streams, consumer groups,
pending-entry lists, claiming after an idle time, all behind one lock so the strategy and the
execution loops may run in threads over it. Its operations are named and behave like their
Redis counterparts (XADD, XGROUP CREATE, XREADGROUP, XACK, XAUTOCLAIM, XDEL); entry ids look
like Redis ids (`<n>-0`, one counter across all streams, so ids also order entries between
streams). Idle times use an injectable monotonic clock, so tests can move time by hand.

The consumer-group reading it shares with Redis is in `stream_group.py`.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from trading_engine.adapters.marketdata.gmo_messages import (
    KNOWN_EXCHANGES,
    MalformedEntry,
    parse_entry,
)
from trading_engine.adapters.marketdata.stream_group import (
    GroupSubscriber,
    RawEntry,
    check_streams,
    dead_letter_fields,
    id_key,
    market_entry,
    market_ref,
)
from trading_engine.ports.market_data import MarketEntry

T = TypeVar("T")
log = logging.getLogger("trading_engine.streams")

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


class InProcessSource(GroupSubscriber[Any, MarketEntry]):
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
        parse = partial(parse_entry, exchanges=exchanges)
        super().__init__(transport, parse, MalformedEntry, market_entry, market_ref)
