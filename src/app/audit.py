"""An order's audit trail: every recorded transition with the state before and after it.

The trail is computed by replaying the order's own events, so it shows exactly what the log
holds, whatever the projections say.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from domain.errors import UnknownOrder
from domain.order import Order
from ports.event_store import EventStore

_DETAIL_FIELDS = {
    "Submitted": (
        "signal_id",
        "side",
        "order_type",
        "time_in_force",
        "size",
        "price",
        "settle",
    ),
    "Accepted": ("exchange_order_id",),
    "Rejected": ("code", "message"),
    "Filled": ("execution_id", "price", "size", "fee", "executed_at", "source"),
    "CancelRequested": ("reason",),
    "Canceled": ("cancel_type", "reason"),
}


@dataclass(frozen=True, slots=True)
class Transition:
    version: int
    recorded_at: datetime
    event: str
    status_before: str | None
    status_after: str
    filled_size: Decimal
    average_price: Decimal | None
    details: dict[str, Any]


def order_trail(store: EventStore, order_id: UUID) -> list[Transition]:
    events = store.events_of(order_id)
    if not events:
        raise UnknownOrder(order_id)
    order: Order | None = None
    trail: list[Transition] = []
    for event in events:
        before = order.status.value if order is not None else None
        order = event.mutate(order)
        assert isinstance(order, Order)
        name = type(event).__name__
        trail.append(
            Transition(
                version=event.originator_version,
                recorded_at=event.timestamp,
                event=name,
                status_before=before,
                status_after=order.status.value,
                filled_size=order.filled_size,
                average_price=order.average_price,
                details={key: getattr(event, key) for key in _DETAIL_FIELDS.get(name, ())},
            )
        )
    return trail
