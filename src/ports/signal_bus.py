"""Signals out of the strategy module and into the execution module."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from trading_engine.domain.models import Signal
from trading_engine.ports.market_data import SourceStats


@dataclass(frozen=True, slots=True)
class SignalEntry:
    """A signal as read: how long before its publication its bar closed, on the feed's clock
    (`age_at_publish`, None if the publisher did not say), and when it entered the stream
    (`entered_at`, on this process's `time.monotonic()` scale; None: read as it arrived).
    Together they say how long ago, in the market's time, the signal's bar closed."""

    entry_id: str
    signal: Signal
    age_at_publish: timedelta | None = None
    entered_at: float | None = None


class SignalPublisher(Protocol):
    def publish(self, signal: Signal, age: timedelta | None = None) -> bool:
        """Put the signal on `signal:{exchange}`, saying how long ago (feed clock) its bar
        closed. Idempotent per signal id: publishing the same signal again (a redelivered
        entry after a crash) returns False and adds nothing."""
        ...


class SignalSubscriber(Protocol):
    """Reads signals in a consumer group; entries are acknowledged once acted on."""

    def recover(self) -> Sequence[SignalEntry]: ...

    def read(self, max_count: int, block_ms: int) -> Sequence[SignalEntry]: ...

    def ack(self, entries: Sequence[SignalEntry]) -> None: ...

    @property
    def stats(self) -> SourceStats:
        """Delivered, acknowledged and dead-lettered entries (by reason), as the market-data
        source counts them."""
        ...

    def close(self) -> None: ...
