"""`trading-engine audit order|signal` as an operator runs it, on a SQLite event store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from support.cli import CliResult
from support.cli import run_cli as cli
from trading_engine.adapters.clocks.manual import ManualClock
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.app.execution.orders import OrderService
from trading_engine.domain.models import Execution, Signal
from trading_engine.domain.order import Order
from trading_engine.domain.signal_decision import SignalDecision

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def a_signal(signal_id: str) -> Signal:
    return Signal(
        signal_id=signal_id,
        exchange="gmo",
        symbol="BTC_JPY",
        strategy="moving_average_cross",
        action="enter_long",
        confidence=Decimal(1),
        price_ref=Decimal(5_000_000),
        timestamp=T0,
        indicators={"fast": 5_010_000.0, "slow": 4_990_000.0},
        meta={},
    )


@pytest.fixture
def database(tmp_path: Path) -> tuple[str, Order]:
    """An approved signal whose order was accepted (GMO-777) and filled in two parts, and a
    refused signal."""
    path = tmp_path / "e.sqlite3"
    store = sqlite_event_store(path)
    try:
        order = Order.submit(
            signal_id="sig-ok",
            exchange="gmo",
            symbol="BTC_JPY",
            side="BUY",
            order_type="MARKET",
            size=Decimal("0.03"),
            at=T0,
        )
        approved = SignalDecision.receive(a_signal("sig-ok"), at=T0)
        approved.approve([order.id], "ACTIVE", at=T0)
        store.save(approved, order)
        orders = OrderService(store, ManualClock(T0))
        orders.accept(order.id, "GMO-777", at=T0 + timedelta(seconds=1))
        for n, size in enumerate(["0.01", "0.02"], start=1):
            at = T0 + timedelta(seconds=1 + n)
            fill = Execution(f"EX-{n}", "BUY", Decimal(5_001_000), Decimal(size), Decimal(0), at)
            orders.record_fill(order.id, fill, at=at, source="poll")
        refused = SignalDecision.receive(a_signal("sig-refused"), at=T0)
        refused.refuse("trading HALTED: kill switch", "HALTED", at=T0)
        store.save(refused)
    finally:
        store.close()
    return f"sqlite:///{path}", order


def run_cli(*args: str, database_url: str, cwd: Path) -> CliResult:
    return cli("audit", *args, cwd=cwd, env={"DATABASE_URL": database_url, "COLUMNS": "200"})


def test_audit_order_and_signal(tmp_path: Path, database: tuple[str, Order]) -> None:
    url, order = database

    shown = run_cli("order", "GMO-777", database_url=url, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    for expected in (
        str(order.id),
        "GMO-777",
        "moving_average_cross",
        "approved",
        "Submitted",
        "PARTIALLY_FILLED → FILLED",
        "EX-1",
        "EX-2",
        "poll",
    ):
        assert expected in shown.stdout, expected

    as_json = run_cli("order", str(order.id), "--json", database_url=url, cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert [
        (t["event"], t["status_before"], t["status_after"]) for t in document["transitions"]
    ] == [
        ("Submitted", None, "NEW"),
        ("Accepted", "NEW", "NEW"),
        ("Filled", "NEW", "PARTIALLY_FILLED"),
        ("Filled", "PARTIALLY_FILLED", "FILLED"),
    ]
    assert document["order"]["exchange_order_id"] == "GMO-777"
    assert document["order"]["filled_size"] == "0.03"
    assert [f["execution_id"] for f in document["fills"]] == ["EX-1", "EX-2"]
    assert document["fills"][0]["price"] == "5001000"
    assert document["signal"]["indicators"] == {"fast": 5010000.0, "slow": 4990000.0}
    assert document["decision"]["order_ids"] == [str(order.id)]
    assert datetime.fromisoformat(document["transitions"][0]["time"]) == T0

    refused = run_cli("signal", "sig-refused", database_url=url, cwd=tmp_path)
    assert refused.returncode == 0, refused.stderr
    assert "refused" in refused.stdout
    assert "trading HALTED: kill switch" in refused.stdout
    assert "HALTED" in refused.stdout

    approved = run_cli("signal", "sig-ok", "--json", database_url=url, cwd=tmp_path)
    assert approved.returncode == 0, approved.stderr
    (led_to,) = json.loads(approved.stdout)["orders"]
    assert (led_to["status"], led_to["filled_size"]) == ("FILLED", "0.03")

    for args in (("order", "GMO-404"), ("order", "GMO-404", "--json"), ("signal", "sig-404")):
        unknown = run_cli(*args, database_url=url, cwd=tmp_path)
        assert unknown.returncode == 1, args
        assert "unknown" in unknown.stderr
        assert "Traceback" not in unknown.stderr
        assert unknown.stdout == ""
