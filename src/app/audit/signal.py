"""What a signal led to, from the event log: the signal as received, the decision (approved
with its orders, or refused with its reason and the trading state then), and each order's
status, filled size and trail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from trading_engine.app.audit.trail import (
    Transition,
    decision_fields,
    decision_for,
    order_fields,
    order_trail,
    signal_fields,
)
from trading_engine.domain.order import Order
from trading_engine.domain.signal_decision import SignalDecision
from trading_engine.ports.event_store import EventStore


class UnknownSignal(LookupError):
    """No decision about this signal id is in the log: execution never received it."""

    def __init__(self, signal_id: str) -> None:
        self.signal_id = signal_id
        super().__init__(f"unknown signal {signal_id} (no decision recorded for it)")


@dataclass(frozen=True, slots=True)
class OrderOutcome:
    order: Order
    trail: list[Transition]


@dataclass(frozen=True, slots=True)
class SignalAudit:
    decision: SignalDecision
    orders: list[OrderOutcome]


def audit_signal(store: EventStore, signal_id: str) -> SignalAudit:
    try:
        decision = decision_for(store, signal_id.strip())
    except ValueError:  # not even a well-formed id
        decision = None
    if decision is None:
        raise UnknownSignal(signal_id)
    orders = []
    for order_id in decision.order_ids:
        order = store.get_order(UUID(order_id))
        orders.append(OrderOutcome(order, order_trail(store, order.id)))
    return SignalAudit(decision, orders)


def signal_document(audit: SignalAudit) -> dict[str, Any]:
    return {
        "signal": signal_fields(audit.decision),
        "decision": decision_fields(audit.decision),
        "orders": [
            {
                **order_fields(outcome.order),
                "trail": [
                    {
                        "time": step.recorded_at,
                        "event": step.event,
                        "status_before": step.status_before,
                        "status_after": step.status_after,
                        "filled_size": step.filled_size,
                    }
                    for step in outcome.trail
                ],
            }
            for outcome in audit.orders
        ],
    }
