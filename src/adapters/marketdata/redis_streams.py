"""Market data from Redis Streams, read in a consumer group (redis-py, synchronous client).

The consumer-group logic (parse, dead-letter, order, recover) is `StreamGroupReader`, shared
with the in-process source (stream_group.py); this module is the Redis side of it: XGROUP
CREATE, XREADGROUP, XAUTOCLAIM, XACK, and dead-lettering as XADD + XACK in one MULTI/EXEC.

Either kind of client works: `decode_responses=False` (bytes; recommended) or `True` (str).
With `True`, redis-py itself decodes every reply and raises on bytes that are not UTF-8
before any entry reaches us, so one bad entry would stop the consumer; with bytes we decode
per entry and dead-letter the bad one (`bad-encoding`). Blocking reads need the client's
`socket_timeout` (if set) to be longer than `block_ms`. The client belongs to the caller:
`close` does not close it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis
from redis.exceptions import ResponseError

from trading_engine.adapters.marketdata.gmo_messages import MalformedEntry, parse_entry
from trading_engine.adapters.marketdata.stream_group import (
    GroupSubscriber,
    RawEntry,
    check_streams,
    dead_letter_fields,
    market_entry,
    market_ref,
)
from trading_engine.ports.market_data import MarketEntry


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


class RedisGroupTransport:
    """`GroupTransport` over Redis Streams for one group and one consumer name."""

    def __init__(
        self,
        client: redis.Redis,
        streams: Sequence[str],
        group: str,
        consumer: str,
        dead_letter_stream: str,
        reclaim_idle_ms: int = 30_000,
    ) -> None:
        self.streams = check_streams(streams)
        if reclaim_idle_ms < 0:
            raise ValueError(f"reclaim_idle_ms must not be negative, got {reclaim_idle_ms}")
        self.client, self.group, self.consumer = client, group, consumer
        self.dead_letter_stream, self.reclaim_idle_ms = dead_letter_stream, reclaim_idle_ms

    def ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                # id 0: entries written before the group's first start are read too.
                self.client.xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    def _entries(self, reply: Any) -> list[RawEntry]:
        """XREADGROUP's reply (RESP2 list or RESP3 dict) as (stream, id, fields) triples."""
        if not reply:
            return []
        pairs = reply.items() if isinstance(reply, dict) else reply
        out: list[RawEntry] = []
        for name, entries in pairs:
            stream = _text(name)
            if isinstance(reply, dict) and entries and isinstance(entries[0], list):
                entries = entries[0]  # redis-py's RESP3 form wraps the entry list once more
            for entry_id, fields in entries or []:
                if entry_id is not None:
                    out.append((stream, _text(entry_id), fields or {}))
        return out

    def _xreadgroup(self, streams: Mapping[str, str], count: int, block: int | None) -> Any:
        try:
            return self.client.xreadgroup(
                self.group, self.consumer, dict(streams), count=count, block=block
            )
        except ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            # The stream (and its group) was deleted under us: start it again from its start.
            self.ensure_groups()
            return self.client.xreadgroup(
                self.group, self.consumer, dict(streams), count=count, block=block
            )

    def read_new(self, count: int, block_ms: int) -> list[RawEntry]:
        # redis-py sends BLOCK only when block is not None, and BLOCK 0 waits forever.
        block = block_ms if block_ms > 0 else None
        reply = self._xreadgroup(dict.fromkeys(self.streams, ">"), count, block)
        return self._entries(reply)

    def read_own_pending(self, stream: str, after_id: str, count: int) -> list[RawEntry]:
        return self._entries(self._xreadgroup({stream: after_id}, count, None))

    def claim_idle(self, stream: str, cursor: str, count: int) -> tuple[str, list[RawEntry]]:
        reply = self.client.xautoclaim(
            stream, self.group, self.consumer, self.reclaim_idle_ms, start_id=cursor, count=count
        )
        # [next cursor, entries, ids of deleted entries (Redis 7 drops those from the PEL)]
        next_cursor, entries = _text(reply[0]), reply[1]
        claimed = [
            (stream, _text(entry_id), fields or {})
            for entry_id, fields in entries
            if entry_id is not None
        ]
        return next_cursor, claimed

    def dead_letter(self, entry: RawEntry, reason: str) -> None:
        stream, entry_id, fields = entry
        with self.client.pipeline(transaction=True) as pipe:
            letter = dead_letter_fields(stream, entry_id, fields, reason)
            pipe.xadd(self.dead_letter_stream, letter)  # type: ignore[arg-type]  # dict[str, str]
            pipe.xack(stream, self.group, entry_id)
            pipe.execute()

    def ack(self, ids_by_stream: Mapping[str, Sequence[str]]) -> int:
        with self.client.pipeline(transaction=False) as pipe:
            for stream, ids in ids_by_stream.items():
                pipe.xack(stream, self.group, *ids)
            return sum(int(n) for n in pipe.execute())

    def server_time_ms(self) -> float | None:
        seconds, microseconds = self.client.time()
        return int(seconds) * 1000 + int(microseconds) / 1000


class RedisStreamsSource(GroupSubscriber[Any, MarketEntry]):
    """`MarketDataSource` over Redis Streams `md:trade`, `md:orderbook`, `md:ticker`."""

    def __init__(
        self,
        client: redis.Redis,
        streams: Sequence[str],
        group: str,
        consumer: str,
        dead_letter_stream: str,
        reclaim_idle_ms: int = 30_000,
    ) -> None:
        self.client = client
        transport = RedisGroupTransport(
            client, streams, group, consumer, dead_letter_stream, reclaim_idle_ms
        )
        super().__init__(transport, parse_entry, MalformedEntry, market_entry, market_ref)
