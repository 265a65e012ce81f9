"""A scripted order lifecycle: the main job until the strategy and execution loops exist.

It drives the real use cases against the configured event store: a limit buy filled in
three parts (one fill redelivered), the same signal processed twice, a market sell canceled
part-way with a late fill after the cancel, a rejected order, an expired order, and bad
input that must be refused without changing anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from trading_engine.app.execution.orders import OrderService
from trading_engine.domain.errors import DomainError
from trading_engine.domain.models import Execution, Signal
from trading_engine.domain.order import Order, order_id_for
from trading_engine.domain.position import Position
from trading_engine.domain.values import Exchange, SignalAction, Symbol

# The scripted lifecycle moves no money: its venue is named as simulated ("demo"), so
# exports for accounts and taxes leave it out even in a store that holds real trading.
EXCHANGE, SYMBOL = Exchange("demo"), Symbol("BTC_JPY")


@dataclass
class DemoResult:
    run_id: str
    order_ids: list[UUID] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    position: Position | None = None
    mark: Decimal = Decimal("15100000")


def _signal(run_id: str, name: str, action: SignalAction, price: str, at: datetime) -> Signal:
    return Signal(
        signal_id=f"demo-{run_id}-{name}",
        exchange=EXCHANGE,
        symbol=SYMBOL,
        strategy="scripted_demo",
        action=action,
        confidence=Decimal("1"),
        price_ref=Decimal(price),
        timestamp=at,
        meta={"demo": True},
    )


def _fill(
    run_id: str, n: int, side: str, price: str, size: str, fee: str, at: datetime
) -> Execution:
    return Execution(f"demo-{run_id}-x{n}", side, Decimal(price), Decimal(size), Decimal(fee), at)


def scripted_lifecycle(orders: OrderService, now: datetime, run_id: str) -> DemoResult:
    result = DemoResult(run_id=run_id)

    def refused(what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except DomainError as error:
            result.notes.append(f"refused as expected — {what}: {error}")
        else:
            raise AssertionError(f"{what} was accepted but must be refused")

    # 1. enter_long: a limit buy filled in three parts; one fill arrives twice.
    buy_signal = _signal(run_id, "A", SignalAction.ENTER_LONG, "15000000", now)
    buy = orders.submit_for_signal(
        buy_signal, side="BUY", order_type="LIMIT", size="0.03", price="15000000", at=now
    )
    result.order_ids.append(buy.id)
    orders.accept(buy.id, f"gmo-{run_id}-1", at=now)
    orders.record_fill(buy.id, _fill(run_id, 1, "BUY", "14999000", "0.01", "-1.5", now), at=now)
    orders.record_fill(buy.id, _fill(run_id, 2, "BUY", "15000000", "0.01", "-1.5", now), at=now)
    again = orders.record_fill(
        buy.id, _fill(run_id, 2, "BUY", "15000000", "0.01", "-1.5", now), at=now
    )
    result.notes.append(f"redelivered execution demo-{run_id}-x2 applied again: {again}")
    orders.record_fill(buy.id, _fill(run_id, 3, "BUY", "15000000", "0.01", "-1.5", now), at=now)
    refused(
        "the same signal processed twice",
        lambda: orders.submit_for_signal(
            buy_signal, side="BUY", order_type="LIMIT", size="0.03", price="15000000", at=now
        ),
    )

    # 2. exit: a market sell, canceled part-way; an execution reported after the cancel.
    sell_signal = _signal(run_id, "B", SignalAction.EXIT, "15200000", now)
    sell = orders.submit_for_signal(
        sell_signal, side="SELL", order_type="MARKET", size="0.03", at=now
    )
    result.order_ids.append(sell.id)
    orders.accept(sell.id, f"gmo-{run_id}-2", at=now)
    orders.record_fill(sell.id, _fill(run_id, 4, "SELL", "15210000", "0.02", "6", now), at=now)
    orders.request_cancel(sell.id, "operator asked to stop", at=now)
    orders.cancel(sell.id, "USER", "canceled at the operator's request", at=now)
    orders.record_fill(sell.id, _fill(run_id, 5, "SELL", "15205000", "0.005", "1.5", now), at=now)

    # 3. enter_short refused by the exchange.
    short_signal = _signal(run_id, "C", SignalAction.ENTER_SHORT, "15200000", now)
    short = orders.submit_for_signal(
        short_signal, side="SELL", order_type="LIMIT", size="0.01", price="15300000", at=now
    )
    result.order_ids.append(short.id)
    orders.reject(short.id, "ERR-201", "Trading margin is insufficient", at=now)

    # 4. a resting buy that expires.
    rest_signal = _signal(run_id, "D", SignalAction.ENTER_LONG, "15000000", now)
    rest = orders.submit_for_signal(
        rest_signal, side="BUY", order_type="LIMIT", size="0.01", price="14000000", at=now
    )
    result.order_ids.append(rest.id)
    orders.accept(rest.id, f"gmo-{run_id}-4", at=now)
    orders.expire(rest.id, "end of GMO trading day", at=now)

    # 5. bad input: refused, nothing stored changes.
    bad = _signal(run_id, "E", SignalAction.ENTER_LONG, "15000000", now)
    refused(
        "a negative size",
        lambda: orders.submit_for_signal(bad, side="BUY", order_type="MARKET", size="-1", at=now),
    )
    refused(
        "a price finer than DECIMAL(20,8)",
        lambda: orders.submit_for_signal(
            bad, side="BUY", order_type="LIMIT", size="0.01", price="15000000.123456789", at=now
        ),
    )
    refused(
        "an unknown side",
        lambda: orders.submit_for_signal(
            bad, side="HOLD", order_type="MARKET", size="0.01", at=now
        ),
    )
    refused(
        "a fill for an unknown order",
        lambda: orders.record_fill(
            order_id_for(bad.signal_id), _fill(run_id, 9, "BUY", "1", "1", "0", now), at=now
        ),
    )
    refused(
        "a fill on a rejected order",
        lambda: orders.record_fill(
            short.id, _fill(run_id, 10, "SELL", "15300000", "0.01", "0", now), at=now
        ),
    )
    refused(
        "an overfill",
        lambda: orders.record_fill(
            buy.id, _fill(run_id, 11, "BUY", "15000000", "0.01", "0", now), at=now
        ),
    )

    result.position = orders.position(EXCHANGE.value, SYMBOL.value)
    return result


def order_summary(order: Order) -> str:
    average = "-" if order.average_price is None else f"{order.average_price:.8f}"
    return (
        f"{order.side} {order.order_type} {order.size} {order.symbol}: {order.status}, "
        f"filled {order.filled_size} @ {average}"
    )
