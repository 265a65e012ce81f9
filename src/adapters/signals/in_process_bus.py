"""Signals over an `InProcessLog`: the embedded default, with the Redis bus's semantics.

Same stream names (`signal:{exchange}`), entry fields, dead-letter stream and exactly-once
publishing per signal id (the log appends and marks the id in one locked step; marks never
expire in memory).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from trading_engine.adapters.marketdata.in_process import (
    InProcessLog,
    InProcessTransport,
    StreamGroupReader,
)
from trading_engine.adapters.signals.codec import (
    MalformedSignal,
    ReadSignal,
    read_signal_entry,
    signal_entry_fields,
)
from trading_engine.adapters.signals.streams import (
    EXECUTION_GROUP,
    dedupe_key,
    signal_entry,
    signal_stream,
)
from trading_engine.domain.models import Signal
from trading_engine.domain.values import Exchange
from trading_engine.ports.market_data import SourceStats
from trading_engine.ports.signal_bus import SignalEntry


class InProcessSignalPublisher:
    def __init__(self, log: InProcessLog, stream_prefix: str = "signal:") -> None:
        self.log, self.stream_prefix = log, stream_prefix

    def publish(self, signal: Signal, age: timedelta | None = None) -> bool:
        stream = signal_stream(signal.exchange, self.stream_prefix)
        key = dedupe_key(stream, signal.signal_id)
        fields = signal_entry_fields(signal, age)
        return self.log.append_unique(stream, key, fields) is not None


class InProcessSignalSubscriber:
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
        self.exchange = Exchange(str(exchange))
        self.stream = signal_stream(self.exchange, stream_prefix)
        self.dead_letter_stream = f"{self.stream}:dead-letter"
        transport = InProcessTransport(
            log, [self.stream], group, consumer, self.dead_letter_stream, reclaim_idle_ms
        )
        self._reader: StreamGroupReader[ReadSignal] = StreamGroupReader(
            transport, self._parse, MalformedSignal
        )

    def _parse(self, stream: str, fields: Mapping[Any, Any]) -> ReadSignal:
        return read_signal_entry(fields, self.exchange)

    def recover(self) -> list[SignalEntry]:
        return [signal_entry(d) for d in self._reader.recover()]

    def read(self, max_count: int, block_ms: int) -> list[SignalEntry]:
        return [signal_entry(d) for d in self._reader.read(max_count, block_ms)]

    def ack(self, entries: Sequence[SignalEntry]) -> None:
        self._reader.ack((self.stream, e.entry_id) for e in entries)

    @property
    def stats(self) -> SourceStats:
        return self._reader.stats

    def close(self) -> None:
        self._reader.close()
