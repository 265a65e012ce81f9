"""What both signal transports (Redis Streams, the in-process log) share: the stream's name,
the execution module's consumer group, the publisher's dedupe key and the entry handed to
the execution loop. Here, not in the Redis adapter, so that the in-process bus (backtests,
the embedded default) never imports redis."""

from __future__ import annotations

from trading_engine.adapters.marketdata.in_process import Delivered
from trading_engine.adapters.signals.codec import ReadSignal
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
