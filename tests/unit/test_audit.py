"""`audit order` / `audit signal` from the event log: lookups, causes, codes, fills."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from rich.console import Console

from trading_engine.adapters.brokers.simulated import SimulatedExchange
from trading_engine.adapters.clocks.manual import ManualClock
from trading_engine.adapters.eventstore.memory import memory_event_store
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.app.audit.signal import UnknownSignal, audit_signal, signal_document
from trading_engine.app.audit.trail import AmbiguousOrder, audit_order, find_order, order_document
from trading_engine.app.audit.view import json_text, print_order_audit, print_signal_audit
from trading_engine.app.execution.order_monitor import OrderMonitor
from trading_engine.app.execution.orders import OrderService
from trading_engine.app.execution.service import ExecutionService, ExecutionSettings
from trading_engine.domain.errors import UnknownOrder
from trading_engine.domain.models import Execution, Signal
from trading_engine.domain.order import Order, order_id_for
from trading_engine.domain.risk import RiskLimits
from trading_engine.domain.signal_decision import SignalDecision
from trading_engine.domain.sizing import GMO_RULES
from trading_engine.domain.values import OrderType

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
LIMITS = RiskLimits(
    max_position_size=Decimal("0.05"),
    max_drawdown_pct=Decimal(5),
    drawdown_window=timedelta(days=1),
    max_consecutive_losses=2,
    starting_equity=Decimal(1_000_000),
)


def a_signal(signal_id: str, symbol: str = "BTC_JPY", exchange: str = "gmo") -> Signal:
    return Signal(
        signal_id=signal_id,
        exchange=exchange,
        symbol=symbol,
        strategy="rsi",
        action="enter_long",
        confidence=Decimal("0.8"),
        price_ref=Decimal(5_000_000),
        timestamp=T0,
        indicators={"rsi": 24.5, "period": 14},
        meta={},
    )


def filled_in_two_parts(store, signal_id: str = "sig-1", exchange_order_id: str = "X-1") -> Order:
    """A decision approving one LIMIT order, accepted, then filled 0.01 + 0.02."""
    signal = a_signal(signal_id)
    order = Order.submit(
        signal_id=signal_id,
        exchange="gmo",
        symbol="BTC_JPY",
        side="BUY",
        order_type="LIMIT",
        size=Decimal("0.03"),
        price=Decimal(4_990_000),
        at=T0,
    )
    decision = SignalDecision.receive(signal, at=T0)
    decision.approve([order.id], "ACTIVE", at=T0)
    store.save(decision, order)
    orders = OrderService(store, ManualClock(T0))
    orders.accept(order.id, exchange_order_id, at=T0 + timedelta(seconds=1))
    for n, size in enumerate(["0.01", "0.02"], start=1):
        at = T0 + timedelta(seconds=1 + n)
        fill = Execution(f"E-{n}", "BUY", Decimal(4_990_000), Decimal(size), Decimal(n), at)
        orders.record_fill(order.id, fill, at=at, source="poll")
    return store.get_order(order.id)


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path: Path):
    made = memory_event_store() if request.param == "memory" else sqlite_event_store(tmp_path / "e")
    yield made
    made.close()


def test_found_by_engine_id_and_by_exchange_id_with_the_same_trail(store) -> None:
    order = filled_in_two_parts(store)
    filled_in_two_parts(store, "sig-2", "X-2")  # another order in the log: not picked up
    by_id, by_exchange_id = audit_order(store, str(order.id)), audit_order(store, "X-1")
    assert by_id.order.id == by_exchange_id.order.id == order.id
    assert by_id.trail == by_exchange_id.trail
    assert [(s.event, s.status_before, s.status_after) for s in by_id.trail] == [
        ("Submitted", None, "NEW"),
        ("Accepted", "NEW", "NEW"),
        ("Filled", "NEW", "PARTIALLY_FILLED"),
        ("Filled", "PARTIALLY_FILLED", "FILLED"),
    ]
    assert by_id.trail[1].details == {"exchange_order_id": "X-1"}


def test_exchange_id_lookup_reads_the_log_in_pages(store, monkeypatch) -> None:
    monkeypatch.setattr(
        "trading_engine.app.audit.trail.LOG_PAGE", 2
    )  # the Accepted event is on a later page
    filled_in_two_parts(store, "sig-0", "X-0")
    order = filled_in_two_parts(store, "sig-1", "X-1")
    assert find_order(store, "X-1").id == order.id


def test_fills_are_listed_with_execution_price_size_fee_time_and_source(store) -> None:
    document = order_document(audit_order(store, str(filled_in_two_parts(store).id)))
    assert [
        (f["execution_id"], f["price"], f["size"], f["fee"], f["source"]) for f in document["fills"]
    ] == [
        ("E-1", Decimal(4_990_000), Decimal("0.01"), Decimal(1), "poll"),
        ("E-2", Decimal(4_990_000), Decimal("0.02"), Decimal(2), "poll"),
    ]
    assert document["fills"][1]["executed_at"] == T0 + timedelta(seconds=3)
    assert document["order"]["status"] == "FILLED"
    assert document["order"]["filled_size"] == Decimal("0.03")


def test_the_causing_signal_and_decision_are_shown(store) -> None:
    order = filled_in_two_parts(store)
    document = order_document(audit_order(store, "X-1"))
    signal = document["signal"]
    assert (signal["signal_id"], signal["strategy"], signal["action"]) == (
        "sig-1",
        "rsi",
        "enter_long",
    )
    assert signal["indicators"] == {"rsi": 24.5, "period": 14}
    assert signal["price_ref"] == Decimal(5_000_000)
    assert document["decision"]["outcome"] == "approved"
    assert document["decision"]["order_ids"] == [str(order.id)]
    assert document["decision"]["trading_state"] == "ACTIVE"
    text = json_text(document)  # Decimals as strings, times ISO 8601
    parsed = orjson.loads(text)
    assert parsed["signal"]["price_ref"] == "5000000"
    assert parsed["transitions"][0]["time"] == "2026-05-01T09:00:00+00:00"


def test_an_order_without_a_decision_says_so(store) -> None:
    orders = OrderService(store, ManualClock(T0))
    order = orders.submit_for_signal(
        a_signal("scripted-1"), side="BUY", order_type="MARKET", size="0.01"
    )
    audit = audit_order(store, str(order.id))
    assert audit.decision is None
    console = Console(record=True, width=200)
    print_order_audit(console, audit)
    assert "no decision recorded" in console.export_text()


def rejecting_rig(store, size: str = "0.01") -> ExecutionService:
    """The simulated exchange with no JPY: a spot buy is rejected with ERR-201."""
    exchange = SimulatedExchange(balances={"JPY": Decimal(1)})
    exchange.set_last_price("BTC", Decimal(5_000_000))
    settings = ExecutionSettings("gmo", OrderType.MARKET, Decimal(size), False, GMO_RULES)
    return ExecutionService(store, exchange, ManualClock(T0), LIMITS, settings)


def test_a_rejected_order_shows_code_and_message(store) -> None:
    outcome = rejecting_rig(store).handle(a_signal("sig-r", symbol="BTC"))
    assert outcome.outcome == "approved"
    audit = audit_order(store, str(order_id_for("sig-r")))
    rejected = audit.trail[-1]
    assert (rejected.event, rejected.status_before, rejected.status_after) == (
        "Rejected",
        "NEW",
        "REJECTED",
    )
    assert rejected.details["code"] == "ERR-201"
    assert "insufficient JPY" in rejected.details["message"]
    console = Console(record=True, width=250)
    print_order_audit(console, audit)
    text = console.export_text()
    assert "ERR-201" in text
    assert "insufficient JPY" in text
    assert "strategy rsi" in text
    assert "rsi=24.5" in text


def test_the_whole_path_through_the_simulated_exchange_is_found_by_its_id(store) -> None:
    exchange = SimulatedExchange(fill_market_at="last_price")
    exchange.set_last_price("BTC_JPY", Decimal(5_000_000))
    clock = ManualClock(T0)
    settings = ExecutionSettings("gmo", OrderType.MARKET, Decimal("0.02"), True, GMO_RULES)
    service = ExecutionService(store, exchange, clock, LIMITS, settings)
    monitor = OrderMonitor(store, exchange, clock)
    (order,) = service.handle(a_signal("sig-sim")).orders
    monitor.track(order)
    monitor.poll()
    audit = audit_order(store, order.exchange_order_id or "")
    assert audit.order.id == order.id
    assert [s.event for s in audit.trail] == ["Submitted", "Accepted", "Filled"]
    assert audit.fills[0].details["size"] == Decimal("0.02")


def test_a_signal_audit_shows_its_orders_status_and_filled_size(store) -> None:
    order = filled_in_two_parts(store)
    audit = audit_signal(store, "sig-1")
    document = signal_document(audit)
    assert document["decision"]["outcome"] == "approved"
    (shown,) = document["orders"]
    assert (shown["order_id"], shown["status"], shown["filled_size"]) == (
        order.id,
        "FILLED",
        Decimal("0.03"),
    )
    assert [step["event"] for step in shown["trail"]] == [
        "Submitted",
        "Accepted",
        "Filled",
        "Filled",
    ]


def test_a_refused_signal_shows_its_reason_and_trading_state(store) -> None:
    outcome = rejecting_rig(store, size="0.000001").handle(a_signal("sig-small", symbol="BTC"))
    assert outcome.outcome == "refused"
    audit = audit_signal(store, "sig-small")
    document = signal_document(audit)
    assert document["decision"]["outcome"] == "refused"
    assert "minimum size" in document["decision"]["reason"]
    assert document["decision"]["trading_state"] == "ACTIVE"
    assert document["orders"] == []
    console = Console(record=True, width=200)
    print_signal_audit(console, audit)
    text = console.export_text()
    assert "refused: BUY 0.000001 BTC is below the minimum size" in text
    assert "trading state ACTIVE" in text


def test_unknown_ids_are_errors(store) -> None:
    filled_in_two_parts(store)
    with pytest.raises(UnknownOrder):
        audit_order(store, "X-404")
    with pytest.raises(UnknownOrder):
        audit_order(store, str(order_id_for("never-sent")))
    decision_id = SignalDecision.receive(a_signal("sig-1"), at=T0).id
    with pytest.raises(UnknownOrder):  # an id of another aggregate is not an order
        audit_order(store, str(decision_id))
    with pytest.raises(UnknownSignal):
        audit_signal(store, "sig-404")
    with pytest.raises(UnknownSignal):
        audit_signal(store, "not a valid id!")


def test_an_exchange_id_two_orders_carry_is_reported_not_guessed(store) -> None:
    filled_in_two_parts(store, "sig-a", "SAME")
    filled_in_two_parts(store, "sig-b", "SAME")
    with pytest.raises(AmbiguousOrder) as raised:
        audit_order(store, "SAME")
    assert len(raised.value.order_ids) == 2
