"""The event store port: where orders and positions live as streams of events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from trading_engine.domain.order import Order
from trading_engine.domain.position import Position


class EventStoreError(Exception):
    """Base class of the store's own failures (not domain refusals)."""


class ConcurrencyConflict(EventStoreError):
    """Another writer saved a newer version of an aggregate first (stale read): reload, retry."""


class AppendOnlyViolation(EventStoreError):
    """Something tried to change or delete a recorded event."""


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One event as recorded in the store's global log, decoded."""

    position: int  # place in the global log (notification id), strictly increasing
    aggregate_id: UUID
    version: int
    topic: str
    event: Any  # the domain event object (Order.Filled, Position.FillApplied, ...)

    @property
    def name(self) -> str:
        return type(self.event).__qualname__

    @property
    def timestamp(self) -> datetime:
        return self.event.timestamp


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What recomputing the event log's hash chain found (issue 7).

    `head` is the last link verified: (position, hex sha256). When `ok` is false,
    `first_mismatch` is the first position that does not match and `reason` says how
    ("state changed", "hash missing", "event missing"); the events before it verified.
    Events recorded before the chain existed are counted in `unhashed`; the chain then
    starts at `start`.
    """

    ok: bool
    checked: int
    head: tuple[int, str] | None
    first_mismatch: int | None = None
    reason: str = ""
    start: int | None = None
    unhashed: int = 0
    aggregate_id: str | None = None  # of the event at first_mismatch, when it still exists
    version: int | None = None
    topic: str | None = None


class EventStore(Protocol):
    """Save aggregates atomically with optimistic concurrency; load them; read the log."""

    def save(self, *aggregates: Any) -> None:
        """Record the pending events of all `aggregates` in one transaction, or none.

        Raises `DuplicateOrder` when a new order's id already exists and
        `ConcurrencyConflict` when an aggregate was changed since it was loaded.
        """
        ...

    def get_order(self, order_id: UUID) -> Order:
        """The order rebuilt from its events; `UnknownOrder` if it has none."""
        ...

    def find(self, aggregate_id: UUID) -> Any | None:
        """Any aggregate (signal decision, trading control, ...) by id, or None."""
        ...

    def state_at(self, aggregate_id: UUID, version: int) -> Any:
        """The aggregate as it was after its event `version` (snapshots used where kept)."""
        ...

    def find_position(self, exchange: str, symbol: str) -> Position | None:
        """The position for (exchange, symbol), or None if it never had a fill."""
        ...

    def events_of(self, aggregate_id: UUID) -> Sequence[Any]:
        """All events of one aggregate, oldest first."""
        ...

    def read_log(self, start: int = 1, limit: int = 1000) -> Sequence[RecordedEvent]:
        """Events of all aggregates in the order they were recorded, from `start`."""
        ...

    def max_position(self) -> int:
        """The position of the last recorded event (0 for an empty log)."""
        ...

    def chain_head(self) -> tuple[int, str] | None:
        """(position, hex hash) of the last event in the hash chain; None if none is hashed."""
        ...

    def verify_chain(self, progress: Callable[[int, int], None] | None = None) -> ChainReport:
        """Recompute the hash chain over the whole log, in pages; `progress(position, last)`."""
        ...

    def close(self) -> None: ...
