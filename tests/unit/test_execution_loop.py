"""The execution loop: the in-process twin with the simulated exchange, a crash between
"order sent" and "answer stored", and a lost order that still receives its fill."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from trading_engine.adapters.brokers.gmo import GmoBroker
from trading_engine.adapters.brokers.simulated import SimulatedExchange
from trading_engine.adapters.eventstore.memory import memory_event_store
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.adapters.marketdata.in_process import InProcessLog
from trading_engine.adapters.signals.in_process_bus import (
    InProcessSignalPublisher,
    InProcessSignalSubscriber,
)
from trading_engine.app.bootstrap.execution import execution_loop
from trading_engine.app.runtime.config import load_settings
from trading_engine.domain.market import Trade
from trading_engine.domain.models import Signal
from trading_engine.domain.order import order_id_for
from trading_engine.domain.values import CancelType, Exchange, OrderStatus, Side, Symbol
from trading_engine.ports.broker import OrderRequest
from trading_engine_standins.gmo import GmoStandIn

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def settings_at_any_age(**values):
    """The signals here are stamped on a fixed day, and their age is not what these tests are
    about (tests/unit/test_signal_age.py is): MAX_SIGNAL_AGE_SECONDS=0 turns that check off."""
    return load_settings(MAX_SIGNAL_AGE_SECONDS=0, **values)


def a_signal(signal_id: str, action: str, exchange: str = "gmo") -> Signal:
    return Signal(
        signal_id=signal_id,
        exchange=exchange,
        symbol="BTC_JPY",
        strategy="rsi",
        action=action,
        confidence=Decimal(1),
        price_ref=Decimal(5_000_000),
        timestamp=T0,
        indicators={"rsi": 25.0},
        meta={},
    )


def test_in_process_twin_with_the_simulated_exchange() -> None:
    settings = settings_at_any_age(
        EXCHANGE_NAME="simulated",
        ORDER_SIZE=Decimal("0.02"),
        DATABASE_URL="memory://",
    )
    log = InProcessLog()
    publisher = InProcessSignalPublisher(log)
    exchange = SimulatedExchange()
    store = memory_event_store()
    subscriber = InProcessSignalSubscriber(log, "simulated", consumer="sim")
    loop = execution_loop(settings, store, exchange, subscriber)
    loop.start()
    for n, action in enumerate(["enter_long", "enter_long", "exit"]):
        publisher.publish(a_signal(f"sim-{n}", action, "simulated"))
        loop.step(block_ms=0)
        exchange.observe_trade(
            Trade(
                Exchange("simulated"),
                Symbol("BTC_JPY"),
                Side.BUY,
                Decimal(5_000_000 + n * 10_000),
                Decimal(1),
                T0,
            )
        )
        loop.poll()
    assert loop.stats.signals == 3
    assert loop.stats.orders == 2  # the second enter_long while long does nothing
    entry = store.get_order(order_id_for("sim-0", 0))
    exit_order = store.get_order(order_id_for("sim-2", 0))
    assert (entry.status, exit_order.status, exit_order.settle) == (
        OrderStatus.FILLED,
        OrderStatus.FILLED,
        "CLOSE",
    )
    position = store.find_position("simulated", "BTC_JPY")
    assert position.quantity == 0
    assert position.realized_pnl == Decimal(400)  # (5,020,000 − 5,000,000) × 0.02


@pytest.fixture
def standin(gmo_standin: Callable[..., GmoStandIn]) -> GmoStandIn:
    return gmo_standin(rate_limited=False)


def gmo_signals(log: InProcessLog) -> InProcessSignalSubscriber:
    return InProcessSignalSubscriber(log, "gmo", consumer="e")


class Crash(Exception):
    """The process dies right after the order left: the answer is never stored."""


class CrashAfterSending:
    def __init__(self, broker: GmoBroker) -> None:
        self._broker, self.name = broker, broker.name

    def place_order(self, request: OrderRequest) -> str:
        self._broker.place_order(request)
        raise Crash

    def __getattr__(self, name: str):
        return getattr(self._broker, name)


def test_crash_between_sending_and_storing_is_settled_by_reconciliation(
    tmp_path: Path, standin: GmoStandIn
) -> None:
    settings = settings_at_any_age(ORDER_TYPE="LIMIT", ORDER_SIZE=Decimal("0.01"))
    log = InProcessLog()
    InProcessSignalPublisher(log).publish(a_signal("crash-1", "enter_long"))
    store = sqlite_event_store(tmp_path / "events.sqlite3")
    broker = GmoBroker(standin.base_url, "k", "s", timeout=1.0)
    first = execution_loop(
        settings,
        store,
        CrashAfterSending(broker),
        InProcessSignalSubscriber(log, "gmo", consumer="e"),
    )
    first.start()
    with pytest.raises(Crash):
        first.step(block_ms=0)
    order_id = order_id_for("crash-1", 0)
    assert store.get_order(order_id).exchange_order_id is None
    assert standin.placements() == 1

    # restart: reconciliation finds the order; the redelivered signal changes nothing
    restarted = execution_loop(settings, store, broker, gmo_signals(log))
    assert restarted.start() == 1  # the unacknowledged signal came back
    assert restarted.reconciliation.placements_found == 1
    assert restarted.stats.duplicates == 1
    order = store.get_order(order_id)
    assert order.exchange_order_id is not None
    assert order.status is OrderStatus.NEW
    assert standin.placements() == 1  # never sent twice
    broker.close()


def test_a_lost_order_still_receives_its_fill(tmp_path: Path, standin: GmoStandIn) -> None:
    settings = settings_at_any_age(
        ORDER_TYPE="LIMIT", ORDER_SIZE=Decimal("0.01"), LOST_ORDER_AFTER=2
    )
    log = InProcessLog()
    InProcessSignalPublisher(log).publish(a_signal("lost-1", "enter_long"))
    store = sqlite_event_store(tmp_path / "events.sqlite3")
    broker = GmoBroker(standin.base_url, "k", "s", timeout=1.0, read_attempts=1)
    loop = execution_loop(settings, store, broker, gmo_signals(log))
    loop.start()
    loop.step(block_ms=0)
    order_id = order_id_for("lost-1", 0)
    exchange_id = store.get_order(order_id).exchange_order_id
    standin.fail_next("/v1/orders", code="ERR-5123", times=2)
    loop.poll()
    assert store.get_order(order_id).status is OrderStatus.NEW  # one "not found" is not lost
    loop.poll()
    lost = store.get_order(order_id)
    assert (lost.status, lost.cancel_type) == (OrderStatus.CANCELED, CancelType.LOST)
    standin.fill(exchange_id, "0.01")
    loop.poll()
    late = store.get_order(order_id)
    assert (late.status, late.filled_size) == (OrderStatus.CANCELED, Decimal("0.01"))
    assert store.find_position("gmo", "BTC_JPY").quantity == Decimal("0.01")
    broker.close()


def _filled_market_orders(tmp_path: Path, standin: GmoStandIn, count: int, fault=None):
    """`count` market orders, each filled at once by the stand-in, and one poll, with the
    stand-in's record of requests covering just that (after `fault` is set up)."""
    settings = settings_at_any_age(ORDER_TYPE="MARKET", ORDER_SIZE=Decimal("0.01"))
    log = InProcessLog()
    publisher = InProcessSignalPublisher(log)
    for n in range(count):
        publisher.publish(a_signal(f"many-{n}", "enter_long" if n % 2 == 0 else "exit"))
    store = sqlite_event_store(tmp_path / "events.sqlite3")
    broker = GmoBroker(standin.base_url, "k", "s", timeout=1.0, requests_per_second=1000)
    loop = execution_loop(settings, store, broker, gmo_signals(log))
    loop.start()  # reconciliation: its own reads
    standin.requests.clear()
    if fault is not None:
        fault()
    loop.step(block_ms=0)  # reads the whole batch and polls once right away (a poll was due)
    assert loop.stats.orders == count
    return loop, store, broker


def gets(standin: GmoStandIn) -> dict[str, int]:
    counts: dict[str, int] = {}
    for method, path, *_ in standin.requests:
        if method == "GET":
            counts[path] = counts.get(path, 0) + 1
    return counts


def test_a_poll_of_many_orders_costs_a_few_requests(tmp_path: Path, standin: GmoStandIn) -> None:
    # GMO allows 20 GETs a second: two requests per order (status, executions) made a poll of
    # 50 fresh orders take five seconds, during which no signal was read.
    loop, store, broker = _filled_market_orders(tmp_path, standin, 24)
    assert gets(standin) == {"/v1/orders": 3, "/v1/latestExecutions": 1}  # 24 ids, 10 a call
    orders = [store.get_order(order_id_for(f"many-{n}", 0)) for n in range(24)]
    assert {o.status for o in orders} == {OrderStatus.FILLED}
    assert store.find_position("gmo", "BTC_JPY").quantity == 0
    assert store.find_position("gmo", "BTC_JPY").closed_trips == 12
    standin.requests.clear()
    loop.poll()  # nothing live: only the sweep's one look at the latest executions
    assert gets(standin) == {"/v1/latestExecutions": 1}
    broker.close()


def test_fills_missing_from_the_latest_executions_are_read_order_by_order(
    tmp_path: Path, standin: GmoStandIn
) -> None:
    def no_latest_executions() -> None:
        standin.http_error_next("/v1/latestExecutions", 503, times=20)

    _, store, broker = _filled_market_orders(tmp_path, standin, 4, no_latest_executions)
    assert gets(standin).get("/v1/executions") == 4
    orders = [store.get_order(order_id_for(f"many-{n}", 0)) for n in range(4)]
    assert [(o.status, o.filled_size) for o in orders] == [
        (OrderStatus.FILLED, Decimal("0.01"))
    ] * 4
    assert store.find_position("gmo", "BTC_JPY").closed_trips == 2
    broker.close()


def test_a_restart_with_an_order_still_live_steps_without_error() -> None:
    """Reconciliation tracks the resting order before any poll of the new loop: the first
    step must treat the poll as due now (it once computed int(-inf) and crashed)."""
    settings = settings_at_any_age(
        EXCHANGE_NAME="simulated",
        ORDER_TYPE="LIMIT",
        DATABASE_URL="memory://",
    )
    log, exchange, store = InProcessLog(), SimulatedExchange(), memory_event_store()
    InProcessSignalPublisher(log).publish(a_signal("s-live", "enter_long", exchange="simulated"))
    first = execution_loop(
        settings, store, exchange, InProcessSignalSubscriber(log, "simulated", consumer="a")
    )
    first.start()
    first.step(block_ms=0)
    assert first.live_orders  # a LIMIT buy resting at the exchange
    again = execution_loop(
        settings, store, exchange, InProcessSignalSubscriber(log, "simulated", consumer="a")
    )
    again.start()
    assert again.live_orders
    again.step(block_ms=0)
    assert again.stats.polls == 1
