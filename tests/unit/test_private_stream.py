"""The simulated exchange pushes its fills (a private stream, as GMO's WebSocket does) and the
order monitor records them with no poll: what a backtest does on every bar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from trading_engine.adapters.brokers.simulated import SimulatedExchange
from trading_engine.adapters.clocks.manual import ManualClock
from trading_engine.adapters.eventstore.memory import memory_event_store
from trading_engine.app.execution.order_monitor import OrderMonitor
from trading_engine.app.execution.service import request_for
from trading_engine.domain.models import OHLCV
from trading_engine.domain.order import Order
from trading_engine.domain.values import OrderStatus

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def bar(minute: int, price: str = "5000000") -> OHLCV:
    p = Decimal(price)
    return OHLCV("simulated", "BTC_JPY", "1m", T0 + timedelta(minutes=minute), p, p, p, p, 0)


def rig() -> tuple[SimulatedExchange, OrderMonitor, object]:
    clock = ManualClock(T0)
    store = memory_event_store()
    store.hand_out_cached_state()  # a backtest's store: the loads are the saved objects
    exchange = SimulatedExchange(
        "simulated", clock=clock, borrowing=True, volume_participation=None
    )
    return exchange, OrderMonitor(store, exchange, clock), store


def place(exchange: SimulatedExchange, monitor: OrderMonitor, store, side: str, size: str) -> Order:
    order = Order.submit(
        signal_id=f"s-{side}-{size}",
        exchange="simulated",
        symbol="BTC_JPY",
        side=side,
        order_type="MARKET",
        size=Decimal(size),
        at=T0,
    )
    store.save(order)
    order.accept(exchange.place_order(request_for(order)), at=T0)
    store.save(order)
    monitor.track(order)
    return order


def test_nothing_is_kept_until_the_stream_is_opened() -> None:
    exchange, monitor, store = rig()
    place(exchange, monitor, store, "BUY", "0.01")
    exchange.observe_bar(bar(1))
    assert exchange.take_private_events().executions == ()
    exchange.open_private_stream()
    place(exchange, monitor, store, "SELL", "0.01")
    exchange.observe_bar(bar(2))
    pushed = exchange.take_private_events()
    assert [(e.side.value, e.size) for e in pushed.executions] == [("SELL", Decimal("0.01"))]
    assert [o.status for o in pushed.orders] == [OrderStatus.FILLED]
    assert exchange.take_private_events().executions == ()  # taken once


def test_pushed_fills_are_recorded_once_and_leave_the_exposure() -> None:
    exchange, monitor, store = rig()
    exchange.open_private_stream()
    order = place(exchange, monitor, store, "BUY", "0.02")
    assert monitor.pending_exposure("BTC_JPY") == Decimal("0.02")
    exchange.observe_bar(bar(1))
    pushed = exchange.take_private_events()
    assert monitor.record_pushed(pushed) == 0  # no order left live
    assert store.get_order(order.id).status is OrderStatus.FILLED
    # the store hands out the object it changed: the exposure must not read it as "before"
    assert monitor.pending_exposure("BTC_JPY") == 0
    assert monitor.tracked == set()
    monitor.record_pushed(pushed)  # delivered twice: recorded once
    position = store.find_position("simulated", "BTC_JPY")
    assert position is not None
    assert position.quantity == Decimal("0.02")
    assert [e.source for e in store.events_of(order.id) if hasattr(e, "source")] == ["stream"]
