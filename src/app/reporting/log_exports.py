"""Compliance exports computed from the event log (never from the read tables), streamed.

Three row kinds, each a generator over the log read in pages, so memory stays flat however
long the log is (the per-order state kept for "state before / after" is a bounded cache that
reloads an evicted order from the store):

* `order_transitions`: one row per order event, with the state before and after it, the
  causing signal and strategy, the exchange's code and message, and the fill's figures;
* `executions`: one row per fill;
* `signals`: one row per signal execution received, with the decision risk gave it.

Rows are plain dicts of str/int values (Decimals as exact strings, times ISO 8601 UTC), so
the writers (CSV, JSON Lines, Parquet) need no knowledge of the domain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from trading_engine.app.projections.tables import ORDER_EVENTS, AggregateCache
from trading_engine.domain.order import Order
from trading_engine.domain.signal_decision import SignalDecision
from trading_engine.domain.values import is_simulated_venue
from trading_engine.ports.event_store import EventStore, RecordedEvent

Progress = Callable[[int, int], None]
PAGE = 2000

ORDER_COLUMNS = (
    "time",
    "log_position",
    "order_id",
    "exchange_order_id",
    "exchange",
    "symbol",
    "event",
    "state_before",
    "state_after",
    "side",
    "order_type",
    "size",
    "price",
    "filled_size",
    "signal_id",
    "strategy",
    "code",
    "message",
    "execution_id",
    "fill_price",
    "fill_size",
    "fee",
)
EXECUTION_COLUMNS = (
    "time",
    "log_position",
    "execution_id",
    "order_id",
    "exchange_order_id",
    "exchange",
    "symbol",
    "side",
    "price",
    "size",
    "fee",
    "source",
)
SIGNAL_COLUMNS = (
    "time",
    "log_position",
    "signal_id",
    "exchange",
    "symbol",
    "strategy",
    "action",
    "confidence",
    "price_ref",
    "signal_time",
    "indicators",
    "decision",
    "reason",
    "trading_state",
    "order_ids",
)


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """What an export covers. Simulated venues (backtests, paper trading, the demo) are left
    out unless `include_simulated` or named as `exchange`: these documents feed accounts and
    taxes. The exchanges kept and the simulated ones left out are noted as rows pass, for the
    manifest."""

    start: datetime | None = None  # inclusive, by the event's recorded time
    end: datetime | None = None  # exclusive
    exchange: str | None = None
    symbol: str | None = None
    include_simulated: bool = False
    included: set[str] = field(default_factory=set, compare=False)
    left_out: set[str] = field(default_factory=set, compare=False)

    def keeps(self, moment: datetime, exchange: str, symbol: str) -> bool:
        if self.start is not None and moment < self.start:
            return False
        if self.end is not None and moment >= self.end:
            return False
        return self.keeps_venue(exchange, symbol)

    def keeps_venue(self, exchange: str, symbol: str) -> bool:
        if self.exchange is not None and exchange != self.exchange:
            return False
        if self.symbol is not None and symbol != self.symbol:
            return False
        if self.exchange is None and not self.include_simulated and is_simulated_venue(exchange):
            self.left_out.add(exchange)
            return False
        self.included.add(exchange)
        return True

    def venues(self) -> dict[str, Any]:
        """For a manifest: the exchanges in the document, and the simulated ones left out."""
        return {
            "exchanges": sorted(self.included),
            "simulated_included": self.include_simulated or self.exchange is not None,
            "simulated_left_out": sorted(self.left_out),
        }


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _log(store: EventStore, progress: Progress | None) -> Iterator[RecordedEvent]:
    head = store.max_position()
    start = 1
    while True:
        page = store.read_log(start, PAGE)
        yield from page
        if progress is not None and page:
            progress(page[-1].position, head)
        if len(page) < PAGE:
            return
        start = page[-1].position + 1


def order_transitions(
    store: EventStore, keep: ExportFilter, progress: Progress | None = None
) -> Iterator[dict[str, str]]:
    orders = AggregateCache(store)
    strategy_of: dict[str, str] = {}  # signal id -> strategy: a few bytes a signal
    for recorded in _log(store, progress):
        event = recorded.event
        if isinstance(event, SignalDecision.Received):
            strategy_of[event.signal_id] = event.strategy
            continue
        if not isinstance(event, ORDER_EVENTS):
            continue
        before = orders.peek(recorded)
        order: Order = orders.apply(recorded)
        if not keep.keeps(recorded.timestamp, str(order.exchange), str(order.symbol)):
            continue
        fill = event if isinstance(event, Order.Filled) else None
        yield {
            "time": _text(recorded.timestamp),
            "log_position": str(recorded.position),
            "order_id": str(order.id),
            "exchange_order_id": _text(order.exchange_order_id),
            "exchange": str(order.exchange),
            "symbol": str(order.symbol),
            "event": type(event).__name__,
            "state_before": "" if before is None else before.value,
            "state_after": order.status.value,
            "side": order.side.value,
            "order_type": order.order_type.value,
            "size": _text(order.size),
            "price": _text(order.price),
            "filled_size": _text(order.filled_size),
            "signal_id": order.signal_id,
            "strategy": strategy_of.get(order.signal_id, ""),
            "code": getattr(event, "code", "") if isinstance(event, Order.Rejected) else "",
            "message": _text(
                getattr(event, "message", None) or getattr(event, "reason", None) or ""
            ),
            "execution_id": fill.execution_id if fill else "",
            "fill_price": _text(fill.price) if fill else "",
            "fill_size": _text(fill.size) if fill else "",
            "fee": _text(fill.fee) if fill else "",
        }


def executions(
    store: EventStore, keep: ExportFilter, progress: Progress | None = None
) -> Iterator[dict[str, str]]:
    orders = AggregateCache(store)
    for recorded in _log(store, progress):
        event = recorded.event
        if not isinstance(event, ORDER_EVENTS):
            continue
        order: Order = orders.apply(recorded)
        if not isinstance(event, Order.Filled):
            continue
        if not keep.keeps(event.executed_at, str(order.exchange), str(order.symbol)):
            continue
        yield {
            "time": _text(event.executed_at),
            "log_position": str(recorded.position),
            "execution_id": event.execution_id,
            "order_id": str(order.id),
            "exchange_order_id": _text(order.exchange_order_id),
            "exchange": str(order.exchange),
            "symbol": str(order.symbol),
            "side": order.side.value,
            "price": _text(event.price),
            "size": _text(event.size),
            "fee": _text(event.fee),
            "source": event.source,
        }


def signals(
    store: EventStore, keep: ExportFilter, progress: Progress | None = None
) -> Iterator[dict[str, str]]:
    received: dict[Any, SignalDecision.Received] = {}  # until its decision: usually one event
    for recorded in _log(store, progress):
        event = recorded.event
        if isinstance(event, SignalDecision.Received):
            received[recorded.aggregate_id] = event
            continue
        if not isinstance(event, SignalDecision.Approved | SignalDecision.Refused):
            continue
        signal = received.pop(recorded.aggregate_id, None)
        if signal is None:  # decided in an earlier page: reload the decision as a whole
            decision = store.state_at(recorded.aggregate_id, recorded.version)
            signal_fields = decision
        else:
            signal_fields = signal
        if not keep.keeps(recorded.timestamp, signal_fields.exchange, signal_fields.symbol):
            continue
        approved = isinstance(event, SignalDecision.Approved)
        yield {
            "time": _text(recorded.timestamp),
            "log_position": str(recorded.position),
            "signal_id": signal_fields.signal_id,
            "exchange": signal_fields.exchange,
            "symbol": signal_fields.symbol,
            "strategy": signal_fields.strategy,
            "action": signal_fields.action,
            "confidence": _text(signal_fields.confidence),
            "price_ref": _text(signal_fields.price_ref),
            "signal_time": _text(signal_fields.signal_time),
            "indicators": _indicators(signal_fields.indicators),
            "decision": "approved" if approved else "refused",
            "reason": "" if approved else event.reason,
            "trading_state": event.trading_state,
            "order_ids": " ".join(event.order_ids) if approved else "",
        }


def _indicators(values: dict[str, Any]) -> str:
    return ";".join(f"{key}={values[key]}" for key in sorted(values))


KINDS: dict[str, tuple[tuple[str, ...], Callable[..., Iterator[dict[str, str]]]]] = {
    "orders": (ORDER_COLUMNS, order_transitions),
    "executions": (EXECUTION_COLUMNS, executions),
    "signals": (SIGNAL_COLUMNS, signals),
}
