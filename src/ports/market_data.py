"""Market data in, and what the strategy loop needs to stay exactly-once over it.

A source hands out batches of validated entries. Malformed entries never reach the loop:
the source sends them to its dead-letter place with the reason, acknowledges them and counts
them. The loop acknowledges a good entry only once everything it caused is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from trading_engine.domain.market import MarketEvent


@dataclass(frozen=True, slots=True)
class MarketEntry:
    """One validated entry: its id in the source (a Redis stream id, or a sequence number).

    `entered_at`: when the entry entered its stream, on this process's `time.monotonic()`
    scale, as far as the source can tell (Redis: from the id's milliseconds and the server's
    clock, so no host clock is involved); None when it cannot (it was read as it arrived)."""

    stream: str
    entry_id: str
    event: MarketEvent
    entered_at: float | None = None


@dataclass
class SourceStats:
    delivered: int = 0
    acknowledged: int = 0
    dead_lettered: int = 0
    reclaimed: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)


class MarketDataSource(Protocol):
    def recover(self) -> Sequence[MarketEntry]:
        """Entries delivered before but never acknowledged (ours after a restart, or a
        crashed consumer's). Called once at start, before `read`."""
        ...

    def read(self, max_count: int, block_ms: int) -> Sequence[MarketEntry]:
        """The next batch of new entries, waiting up to `block_ms` for the first one."""
        ...

    def ack(self, entries: Sequence[MarketEntry]) -> None:
        """These entries' effects are stored: they need never be delivered again."""
        ...

    @property
    def stats(self) -> SourceStats: ...

    def close(self) -> None: ...
