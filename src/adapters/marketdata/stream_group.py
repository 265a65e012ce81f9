"""Consumer-group reading shared by every stream adapter, over either transport.

`StreamGroupReader` is the consumer-group logic that the Redis and the in-process sources and
the signal subscribers share, over a small `GroupTransport`: parse each entry, move the
malformed to the dead-letter stream (appended and acknowledged in one step) and count them,
hand out batches in id order, recover our own pending entries and then claim other consumers'
idle ones. `GroupSubscriber` is the subscriber on top of it (recover, read, ack, stats,
close) that market data and signals, on Redis or in process, each are with their own
transport and entry type. Keeping it in one place is what makes the adapters behave
identically.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import orjson

from trading_engine.ports.market_data import MarketEntry, SourceStats

T = TypeVar("T")
E = TypeVar("E")
log = logging.getLogger("trading_engine.streams")


def reason_kind(reason: str) -> str:
    """`<kind>: <detail>` -> `<kind>` (`bad-json`, `wrong-channel`, ...): what stats count by."""
    return reason.split(":", 1)[0].strip()


class Malformed(ValueError):
    """An entry that cannot be read (a market event, a signal). `reason` is
    `<kind>: <detail>`; the entry goes to the dead-letter stream with it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def kind(self) -> str:
        return reason_kind(self.reason)


def field_text(what: str, value: object, malformed: type[Malformed]) -> str:
    """A field name or value as text: bytes must be UTF-8 (`bad-encoding`), nothing else but
    text is accepted (`bad-entry`); `malformed` is the kind of entry being read."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as error:
            raise malformed(f"bad-encoding: {what} is not UTF-8 ({error})") from None
    raise malformed(f"bad-entry: {what} is a {type(value).__name__}, not text")


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


class GroupSubscriber(Generic[T, E]):
    """A consumer group's subscriber: entries parsed into `T` by the reader, handed out as
    `E` (`to_entry`), acknowledged by (stream, id) (`ref`). Subclasses only pick the
    transport (Redis or in process) and the entry type (market data or signals)."""

    def __init__(
        self,
        transport: GroupTransport,
        parse: Callable[[str, Mapping[Any, Any]], T],
        malformed: type[Exception] | tuple[type[Exception], ...],
        to_entry: Callable[[Delivered[T]], E],
        ref: Callable[[E], tuple[str, str]],
    ) -> None:
        self._reader: StreamGroupReader[T] = StreamGroupReader(transport, parse, malformed)
        self._to_entry, self._ref = to_entry, ref

    def recover(self) -> list[E]:
        return [self._to_entry(d) for d in self._reader.recover()]

    def read(self, max_count: int, block_ms: int) -> list[E]:
        return [self._to_entry(d) for d in self._reader.read(max_count, block_ms)]

    def ack(self, entries: Sequence[E]) -> None:
        self._reader.ack(self._ref(e) for e in entries)

    @property
    def stats(self) -> SourceStats:
        return self._reader.stats

    def close(self) -> None:
        self._reader.close()


def market_ref(entry: MarketEntry) -> tuple[str, str]:
    return entry.stream, entry.entry_id
