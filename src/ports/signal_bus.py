"""Signals out of the strategy module and into the execution module."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from domain.models import Signal


@dataclass(frozen=True, slots=True)
class SignalEntry:
    entry_id: str
    signal: Signal


class SignalPublisher(Protocol):
    def publish(self, signal: Signal) -> bool:
        """Put the signal on `signal:{exchange}`. Idempotent per signal id: publishing the same
        signal again (a redelivered entry after a crash) returns False and adds nothing."""
        ...


class SignalSubscriber(Protocol):
    """Reads signals in a consumer group; entries are acknowledged once acted on."""

    def recover(self) -> Sequence[SignalEntry]: ...

    def read(self, max_count: int, block_ms: int) -> Sequence[SignalEntry]: ...

    def ack(self, entries: Sequence[SignalEntry]) -> None: ...

    def close(self) -> None: ...
