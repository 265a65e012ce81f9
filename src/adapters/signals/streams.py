"""What both signal transports (Redis Streams, the in-process log) share: the stream's name,
the execution module's consumer group, the publisher's dedupe key, the entry handed to
the execution loop and the subscriber itself (each transport only builds its own). Here,
not in the Redis adapter, so that the in-process bus (backtests, the embedded default) never
imports redis."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from trading_engine.adapters.marketdata.stream_group import (
    Delivered,
    GroupSubscriber,
    GroupTransport,
)
from trading_engine.adapters.signals.codec import MalformedSignal, ReadSignal, read_signal_entry
from trading_engine.domain.values import Exchange
from trading_engine.ports.signal_bus import SignalEntry

EXECUTION_GROUP = "trading-engine-execution"


def signal_stream(exchange: Exchange | str, stream_prefix: str = "signal:") -> str:
    return f"{stream_prefix}{Exchange(str(exchange))}"


def dedupe_key(stream: str, signal_id: str) -> str:
    return f"{stream}:published:{signal_id}"


def signal_entry(delivered: Delivered[ReadSignal]) -> SignalEntry:
    signal, age = delivered.value
    return SignalEntry(delivered.entry_id, signal, age, delivered.entered_at)


class SignalGroupSubscriber(GroupSubscriber[ReadSignal, SignalEntry]):
    """`SignalSubscriber` on `signal:{exchange}` in the execution module's consumer group, over
    the transport `transport_for(streams, dead_letter_stream)` builds."""

    def __init__(
        self,
        transport_for: Callable[[list[str], str], GroupTransport],
        exchange: Exchange | str,
        stream_prefix: str,
    ) -> None:
        self.exchange = Exchange(str(exchange))
        self.stream = signal_stream(self.exchange, stream_prefix)
        self.dead_letter_stream = f"{self.stream}:dead-letter"
        transport = transport_for([self.stream], self.dead_letter_stream)
        super().__init__(transport, self._parse, MalformedSignal, signal_entry, self._ref)

    def _parse(self, stream: str, fields: Mapping[Any, Any]) -> ReadSignal:
        return read_signal_entry(fields, self.exchange)

    def _ref(self, entry: SignalEntry) -> tuple[str, str]:
        return self.stream, entry.entry_id
