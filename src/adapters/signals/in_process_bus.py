"""Signals over an `InProcessLog`: the embedded default, with the Redis bus's semantics.

Same stream names (`signal:{exchange}`), entry fields, dead-letter stream and exactly-once
publishing per signal id (the log appends and marks the id in one locked step; marks never
expire in memory).
"""

from __future__ import annotations

from datetime import timedelta

from trading_engine.adapters.marketdata.in_process import (
    InProcessLog,
    InProcessTransport,
)
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


class InProcessSignalPublisher:
    def __init__(self, log: InProcessLog, stream_prefix: str = "signal:") -> None:
        self.log, self.stream_prefix = log, stream_prefix

    def publish(self, signal: Signal, age: timedelta | None = None) -> bool:
        stream = signal_stream(signal.exchange, self.stream_prefix)
        key = dedupe_key(stream, signal.signal_id)
        fields = signal_entry_fields(signal, age)
        return self.log.append_unique(stream, key, fields) is not None


class InProcessSignalSubscriber(SignalGroupSubscriber):
    def __init__(
        self,
        log: InProcessLog,
        exchange: Exchange | str,
        *,
        group: str = EXECUTION_GROUP,
        consumer: str,
        stream_prefix: str = "signal:",
        reclaim_idle_ms: int = 30_000,
    ) -> None:
        self.log = log
        super().__init__(
            lambda streams, dead_letters: InProcessTransport(
                log, streams, group, consumer, dead_letters, reclaim_idle_ms
            ),
            exchange,
            stream_prefix,
        )
