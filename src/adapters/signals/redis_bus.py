"""Signals on the Redis stream `signal:{exchange}`: published exactly once per signal id, read
by the execution module in its consumer group.

Publishing runs one Lua script, so the dedupe mark and the entry are written together: a
strategy that publishes the same decision again after a crash (it cannot know whether the
first attempt got there) adds nothing. The mark `{stream}:published:{signal_id}` expires after
`dedupe_ttl_s` (7 days by default); a signal is never re-published that late. The script adds
the entry before setting the mark, so an XADD that fails (say, the key holds another type)
leaves no mark behind and the signal can still be published once the cause is fixed.

The subscriber shares the market-data source's consumer-group logic: a malformed entry goes
to `{stream}:dead-letter` with its reason, is acknowledged and counted in `stats`.
"""

from __future__ import annotations

from datetime import timedelta

import redis

from trading_engine.adapters.marketdata.redis_streams import RedisGroupTransport
from trading_engine.adapters.signals.codec import (
    signal_entry_fields,
)
from trading_engine.adapters.signals.streams import (
    EXECUTION_GROUP,
    SignalGroupSubscriber,
    dedupe_key,
    signal_stream,
)
from trading_engine.domain.models import Signal
from trading_engine.domain.values import Exchange

_PUBLISH_ONCE = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
return 1
"""


class RedisSignalPublisher:
    """`SignalPublisher` on `signal:{exchange}`; `publish` is True only when it added."""

    def __init__(
        self,
        client: redis.Redis,
        stream_prefix: str = "signal:",
        dedupe_ttl_s: int = 7 * 86400,
    ) -> None:
        if dedupe_ttl_s < 1:
            raise ValueError(f"dedupe_ttl_s must be at least 1 second, got {dedupe_ttl_s}")
        self.client, self.stream_prefix, self.dedupe_ttl_s = client, stream_prefix, dedupe_ttl_s
        self._script = client.register_script(_PUBLISH_ONCE)

    def publish(self, signal: Signal, age: timedelta | None = None) -> bool:
        stream = signal_stream(signal.exchange, self.stream_prefix)
        fields = signal_entry_fields(signal, age)
        added = self._script(
            keys=[stream, dedupe_key(stream, signal.signal_id)],
            args=[self.dedupe_ttl_s, *(part for pair in fields.items() for part in pair)],
        )
        return int(added) == 1


class RedisSignalSubscriber(SignalGroupSubscriber):
    """`SignalSubscriber` on `signal:{exchange}` in the execution module's consumer group."""

    def __init__(
        self,
        client: redis.Redis,
        exchange: Exchange | str,
        *,
        group: str = EXECUTION_GROUP,
        consumer: str,
        stream_prefix: str = "signal:",
        reclaim_idle_ms: int = 30_000,
    ) -> None:
        self.client = client
        super().__init__(
            lambda streams, dead_letters: RedisGroupTransport(
                client, streams, group, consumer, dead_letters, reclaim_idle_ms
            ),
            exchange,
            stream_prefix,
        )
