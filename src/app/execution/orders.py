"""Order use cases: each loads the aggregates it needs, runs one command, saves atomically.

A fill moves the order and its position in one transaction, so the log never holds a fill
on an order without the matching move of the position (or the other way round).
"""

from __future__ import annotations

import logging
from datetime import datetime
from uuid import UUID

from trading_engine.app.runtime.log_events import order_event
from trading_engine.domain.models import Execution, Signal
from trading_engine.domain.order import Order
from trading_engine.domain.position import Position
from trading_engine.domain.values import CancelType, OrderType, Side, TimeInForce
from trading_engine.ports.clock import Clock
from trading_engine.ports.event_store import ConcurrencyConflict, EventStore

# A fill races only with other fills of the same symbol (the shared position); a few
# reload-and-retry rounds resolve that without giving up on a fact the exchange reported.
_FILL_ATTEMPTS = 5

log = logging.getLogger("trading_engine.orders")


class OrderService:
    def __init__(self, store: EventStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def submit_for_signal(
        self,
        signal: Signal,
        *,
        side: Side | str,
        order_type: OrderType | str,
        size: object,
        price: object = None,
        time_in_force: TimeInForce | str | None = None,
        leg: int = 0,
        at: datetime | None = None,
    ) -> Order:
        """Create the order this signal causes. Raises `DuplicateOrder` if it already exists."""
        order = Order.submit(
            signal_id=signal.signal_id,
            exchange=signal.exchange,
            symbol=signal.symbol,
            side=side,
            order_type=order_type,
            size=size,
            price=price,
            time_in_force=time_in_force,
            leg=leg,
            at=at or self._clock.now(),
        )
        self._store.save(order)
        return order

    def accept(
        self, order_id: UUID, exchange_order_id: str, *, at: datetime | None = None
    ) -> Order:
        order = self._store.get_order(order_id)
        if order.accept(exchange_order_id, at=at or self._clock.now()):
            self._store.save(order)
            order_event(log, order, "order", "accepted")
        return order

    def reject(
        self, order_id: UUID, code: str, message: str, *, at: datetime | None = None
    ) -> Order:
        order = self._store.get_order(order_id)
        order.reject(code, message, at=at or self._clock.now())
        self._store.save(order)
        order_event(log, order, "rejection", f"{code}: {message}")
        return order

    def request_cancel(self, order_id: UUID, reason: str, *, at: datetime | None = None) -> Order:
        order = self._store.get_order(order_id)
        if order.request_cancel(reason, at=at or self._clock.now()):
            self._store.save(order)
        return order

    def cancel(
        self,
        order_id: UUID,
        cancel_type: CancelType | str,
        reason: str = "",
        *,
        at: datetime | None = None,
    ) -> Order:
        order = self._store.get_order(order_id)
        order.cancel(cancel_type, reason, at=at or self._clock.now())
        self._store.save(order)
        order_event(log, order, "order", f"canceled ({order.cancel_type}): {reason}")
        return order

    def expire(self, order_id: UUID, reason: str = "", *, at: datetime | None = None) -> Order:
        order = self._store.get_order(order_id)
        order.expire(reason, at=at or self._clock.now())
        self._store.save(order)
        order_event(log, order, "order", f"expired: {reason}")
        return order

    def record_fill(
        self,
        order_id: UUID,
        execution: Execution,
        *,
        at: datetime | None = None,
        source: str = "exchange",
    ) -> bool:
        """Apply one execution to its order and position. False if it was already recorded."""
        recorded_at = at or self._clock.now()
        for attempt in range(1, _FILL_ATTEMPTS + 1):
            order = self._store.get_order(order_id)
            if not order.fill(execution, at=recorded_at, source=source):
                return False
            position = self._store.find_position(
                order.exchange.value, order.symbol.value
            ) or Position.open_book(order.exchange, order.symbol, at=recorded_at)
            position.apply_fill(
                order_id=order.id,
                exchange=order.exchange,
                symbol=order.symbol,
                execution=execution,
                at=recorded_at,
            )
            try:
                self._store.save(order, position)
            except ConcurrencyConflict:
                if attempt == _FILL_ATTEMPTS:
                    raise
                continue
            order_event(
                log,
                order,
                "fill",
                f"filled {execution.size} at {execution.price}",
                execution_id=execution.execution_id,
                fill_price=str(execution.price),
                fill_size=str(execution.size),
                fee=str(execution.fee),
                executed_at=execution.executed_at.isoformat(),
                filled_size=str(order.filled_size),
            )
            return True
        raise AssertionError("unreachable")

    def position(self, exchange: str, symbol: str) -> Position | None:
        return self._store.find_position(exchange, symbol)
