"""An order's audit trail: every recorded transition with the state before and after it.

The trail is computed by replaying the order's own events, so it shows exactly what the log
holds, whatever the projections say. An order is found by its engine id or by the exchange's
order id (read from its `Accepted` event); its cause is the `SignalDecision` of its signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from trading_engine.domain.errors import UnknownOrder
from trading_engine.domain.order import Order
from trading_engine.domain.signal_decision import SignalDecision, decision_id_for
from trading_engine.ports.event_store import EventStore

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


# ----- finding an order and what caused it ---------------------------------------------------

LOG_PAGE = 1000


class AmbiguousOrder(LookupError):
    """An exchange order id that more than one order carries (two exchanges reused it)."""

    def __init__(self, reference: str, order_ids: list[UUID]) -> None:
        self.order_ids = order_ids
        ids = ", ".join(str(i) for i in order_ids)
        super().__init__(f"exchange order id {reference} names several orders: {ids}")


def order_ids_by_exchange_id(store: EventStore, exchange_order_id: str) -> list[UUID]:
    """Orders whose `Accepted` event carries `exchange_order_id` (the log, read in pages)."""
    found: list[UUID] = []
    start = 1
    while True:
        page = store.read_log(start, LOG_PAGE)
        found += [
            r.aggregate_id
            for r in page
            if isinstance(r.event, Order.Accepted)
            and r.event.exchange_order_id == exchange_order_id
        ]
        if len(page) < LOG_PAGE:
            return found
        start = page[-1].position + 1


def find_order(store: EventStore, reference: str) -> Order:
    """The order whose engine id (a UUID) or exchange order id is `reference`."""
    try:
        order_id: UUID | None = UUID(reference.strip())
    except ValueError:
        order_id = None
    if order_id is not None:
        events = store.events_of(order_id)
        if events and isinstance(events[0], Order.Submitted):
            return store.get_order(order_id)
    matches = order_ids_by_exchange_id(store, reference.strip())
    if not matches:
        raise UnknownOrder(reference)
    if len(matches) > 1:
        raise AmbiguousOrder(reference, matches)
    return store.get_order(matches[0])


def decision_for(store: EventStore, signal_id: str) -> SignalDecision | None:
    """The recorded decision about a signal (None for orders made without one, e.g. the demo)."""
    found = store.find(decision_id_for(signal_id))
    return found if isinstance(found, SignalDecision) else None


@dataclass(frozen=True, slots=True)
class OrderAudit:
    order: Order
    decision: SignalDecision | None
    trail: list[Transition]

    @property
    def fills(self) -> list[Transition]:
        return [step for step in self.trail if step.event == "Filled"]


def audit_order(store: EventStore, reference: str) -> OrderAudit:
    order = find_order(store, reference)
    return OrderAudit(order, decision_for(store, order.signal_id), order_trail(store, order.id))


# ----- plain documents (for --json) ----------------------------------------------------------


def order_fields(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "exchange_order_id": order.exchange_order_id,
        "signal_id": order.signal_id,
        "leg": order.leg,
        "exchange": str(order.exchange),
        "symbol": str(order.symbol),
        "side": order.side.value,
        "order_type": order.order_type.value,
        "time_in_force": order.time_in_force.value,
        "settle": order.settle,
        "size": order.size,
        "price": order.price,
        "status": order.status.value,
        "filled_size": order.filled_size,
        "average_price": order.average_price,
        "fees": order.fees,
        "reject_code": order.reject_code,
        "reject_message": order.reject_message,
        "cancel_type": None if order.cancel_type is None else order.cancel_type.value,
        "cancel_reason": order.cancel_reason,
        "submitted_at": order.created_on,
    }


def signal_fields(decision: SignalDecision) -> dict[str, Any]:
    """The signal as the execution module received it."""
    return {
        "signal_id": decision.signal_id,
        "exchange": decision.exchange,
        "symbol": decision.symbol,
        "strategy": decision.strategy,
        "action": decision.action,
        "confidence": decision.confidence,
        "price_ref": decision.price_ref,
        "time": decision.signal_time,
        "indicators": decision.indicators,
        "meta": decision.meta,
        "received_at": decision.created_on,
    }


def decision_fields(decision: SignalDecision) -> dict[str, Any]:
    return {
        "outcome": decision.outcome,
        "reason": decision.reason,
        "order_ids": list(decision.order_ids),
        "trading_state": decision.trading_state,
        "decided_at": decision.modified_on if decision.outcome is not None else None,
    }


def transition_fields(step: Transition) -> dict[str, Any]:
    return {
        "version": step.version,
        "time": step.recorded_at,
        "event": step.event,
        "status_before": step.status_before,
        "status_after": step.status_after,
        "filled_size": step.filled_size,
        "average_price": step.average_price,
        "details": step.details,
    }


def fill_fields(step: Transition) -> dict[str, Any]:
    return {**step.details, "recorded_at": step.recorded_at}


def order_document(audit: OrderAudit) -> dict[str, Any]:
    decision = audit.decision
    return {
        "order": order_fields(audit.order),
        "signal": None if decision is None else signal_fields(decision),
        "decision": None if decision is None else decision_fields(decision),
        "transitions": [transition_fields(step) for step in audit.trail],
        "fills": [fill_fields(step) for step in audit.fills],
    }
