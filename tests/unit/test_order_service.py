"""Order use cases over a real (in-memory or SQLite) event store."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from trading_engine.adapters.clocks.manual import ManualClock
from trading_engine.adapters.eventstore.application import EventSourcedStore
from trading_engine.adapters.eventstore.memory import memory_event_store
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.app.execution.orders import OrderService
from trading_engine.domain.errors import DuplicateOrder, IllegalOrderTransition, UnknownOrder
from trading_engine.domain.models import Execution, Signal
from trading_engine.domain.order import order_id_for
from trading_engine.domain.values import OrderStatus, PositionSide

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def signal(signal_id: str) -> Signal:
    return Signal(
        signal_id=signal_id,
        exchange="gmo",
        symbol="BTC_JPY",
        strategy="test",
        action="enter_long",
        confidence=Decimal("0.5"),
        price_ref=Decimal("100"),
        timestamp=T0,
    )


def execution(execution_id: str, side: str, price: str, size: str, fee: str = "0") -> Execution:
    return Execution(execution_id, side, Decimal(price), Decimal(size), Decimal(fee), T0)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> EventSourcedStore:
    if request.param == "memory":
        return memory_event_store()
    return sqlite_event_store(tmp_path / "events.sqlite3")


def test_fill_moves_order_and_position_together(store: EventSourcedStore) -> None:
    orders = OrderService(store, ManualClock(T0))
    buy = orders.submit_for_signal(signal("s1"), side="BUY", order_type="MARKET", size="2")
    orders.record_fill(buy.id, execution("e1", "BUY", "100", "2", "1"))
    sell = orders.submit_for_signal(signal("s2"), side="SELL", order_type="MARKET", size="3")
    orders.record_fill(sell.id, execution("e2", "SELL", "110", "3", "1.5"))
    position = orders.position("gmo", "BTC_JPY")
    assert position is not None
    assert position.side is PositionSide.SHORT
    assert position.size == Decimal(1)
    # close 2: (110 - 100) × 2 − entry fee 1 − closing share of the fee 1.5 × 2/3 = 18
    assert position.realized_pnl == Decimal(18)
    assert store.get_order(sell.id).status is OrderStatus.FILLED
    # one Created + two FillApplied on the position; each fill saved with its order
    assert len(store.events_of(position.id)) == 3


def test_duplicate_signal_and_redelivered_fill_change_nothing(store: EventSourcedStore) -> None:
    orders = OrderService(store, ManualClock(T0))
    buy = orders.submit_for_signal(signal("s1"), side="BUY", order_type="MARKET", size="2")
    with pytest.raises(DuplicateOrder):
        orders.submit_for_signal(signal("s1"), side="BUY", order_type="MARKET", size="2")
    assert orders.record_fill(buy.id, execution("e1", "BUY", "100", "1")) is True
    head = store.max_position()
    assert orders.record_fill(buy.id, execution("e1", "BUY", "100", "1")) is False
    assert store.max_position() == head


def test_refused_commands_store_nothing(store: EventSourcedStore) -> None:
    orders = OrderService(store, ManualClock(T0))
    buy = orders.submit_for_signal(signal("s1"), side="BUY", order_type="MARKET", size="1")
    orders.reject(buy.id, "ERR-201", "Trading margin is insufficient")
    head = store.max_position()
    with pytest.raises(UnknownOrder):
        orders.record_fill(order_id_for("nope"), execution("e1", "BUY", "100", "1"))
    with pytest.raises(IllegalOrderTransition):
        orders.record_fill(buy.id, execution("e2", "BUY", "100", "1"))
    with pytest.raises(IllegalOrderTransition):
        orders.cancel(buy.id, "USER")
    assert store.max_position() == head
    assert orders.position("gmo", "BTC_JPY") is None


class RacingStore(EventSourcedStore):
    """A real store whose first save lets a competing writer record a fill just before it."""

    def __init__(self, env, race) -> None:
        super().__init__(env)
        self._race = race

    def save(self, *aggregates, **kwargs):
        if self._race is not None and any(a.version > 1 for a in aggregates):
            race, self._race = self._race, None
            race()
        return super().save(*aggregates, **kwargs)


def test_fill_retries_when_another_fill_moved_the_position_first(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    other = OrderService(sqlite_event_store(path), ManualClock(T0))
    a = other.submit_for_signal(signal("a"), side="BUY", order_type="MARKET", size="1")
    b = other.submit_for_signal(signal("b"), side="BUY", order_type="MARKET", size="1")
    other.record_fill(a.id, execution("ea1", "BUY", "100", "0.5"))

    racing = RacingStore(
        {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)},
        race=lambda: other.record_fill(a.id, execution("ea2", "BUY", "102", "0.5")),
    )
    assert OrderService(racing, ManualClock(T0)).record_fill(
        b.id, execution("eb1", "BUY", "104", "1")
    )
    position = racing.find_position("gmo", "BTC_JPY")
    assert position is not None
    assert position.quantity == Decimal(2)
    assert position.entry_cost == Decimal("50") + Decimal("51") + Decimal("104")
    assert position.fill_count == 3
