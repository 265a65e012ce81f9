"""Fills learned together are recorded in the exchange's order: a poll that returns a buy
and a sell of the same second (GMO lists executions newest first) records the buy first, so
the log, the executions export and the tax computation see the acquisition before the sale."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

import trading_engine_standins.gmo.exchange as standin_exchange
from trading_engine.adapters.brokers.gmo import GmoBroker
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.adapters.marketdata.in_process import InProcessLog
from trading_engine.adapters.signals.in_process_bus import (
    InProcessSignalPublisher,
    InProcessSignalSubscriber,
)
from trading_engine.app.bootstrap.execution import execution_loop
from trading_engine.app.execution.order_monitor import execution_order
from trading_engine.app.reporting.log_exports import ExportFilter, executions
from trading_engine.app.reporting.tax_export import tax_report
from trading_engine.app.runtime.config import load_settings
from trading_engine.domain.models import Signal
from trading_engine.domain.position import Position
from trading_engine.domain.values import Side
from trading_engine.ports.broker import ExchangeExecution
from trading_engine_standins.gmo import GmoStandIn

SECOND = datetime(2026, 3, 2, 1, 52, 10, 886_000, tzinfo=UTC)


@pytest.fixture
def standin(monkeypatch: pytest.MonkeyPatch, gmo_standin: Callable[..., GmoStandIn]) -> GmoStandIn:
    # Every fill of this test happens at the same instant, as two fills of a busy second can.
    monkeypatch.setattr(standin_exchange, "now_utc", lambda: SECOND)
    return gmo_standin(rate_limited=False)


def a_signal(signal_id: str, action: str) -> Signal:
    return Signal(
        signal_id=signal_id,
        exchange="gmo",
        symbol="BTC",  # spot: a sale is a disposal for the tax export
        strategy="moving_average_cross",
        action=action,
        confidence=Decimal(1),
        price_ref=Decimal(5_000_000),
        timestamp=SECOND,
        meta={"timeframe": "1m"},
    )


def test_a_buy_and_a_sell_of_one_second_are_recorded_buy_first(
    tmp_path: Path, standin: GmoStandIn
) -> None:
    settings = load_settings(
        ORDER_TYPE="MARKET", ORDER_SIZE=Decimal("0.01"), SYMBOLS="BTC", MAX_SIGNAL_AGE_SECONDS=0
    )
    log = InProcessLog()
    publisher = InProcessSignalPublisher(log)
    publisher.publish(a_signal("buy", "enter_long"))
    publisher.publish(a_signal("sell", "exit"))
    store = sqlite_event_store(tmp_path / "events.sqlite3")
    broker = GmoBroker(standin.base_url, "k", "s", timeout=2.0, requests_per_second=1000)
    loop = execution_loop(
        settings, store, broker, InProcessSignalSubscriber(log, "gmo", consumer="e")
    )
    loop.start()
    # The exit is decided before any fill is known: the pending buy counts as the position.
    loop.step(block_ms=0)
    loop.poll()
    listed = broker.recent_executions("BTC")
    assert [e.side for e in listed] == [Side.SELL, Side.BUY]  # newest first, same instant
    assert len({e.timestamp for e in listed}) == 1

    applied = [
        r.event.side for r in store.read_log(1, 1000) if isinstance(r.event, Position.FillApplied)
    ]
    assert applied == [Side.BUY, Side.SELL]
    exported = [row["side"] for row in executions(store, ExportFilter())]
    assert exported == ["BUY", "SELL"]
    (btc,) = tax_report(store, 2026, "moving-average").symbols
    assert len(btc.acquisitions) == 1
    assert len(btc.disposals) == 1
    assert btc.carried_out.quantity == 0
    broker.close()
    store.close()


def test_the_exchange_order_is_time_then_the_id_as_a_number() -> None:
    def execution(execution_id: str, second: int) -> ExchangeExecution:
        at = SECOND.replace(second=second)
        return ExchangeExecution(
            execution_id, "1", "BTC", Side.BUY, Decimal(1), Decimal(1), Decimal(0), at
        )

    found = [execution("100", 10), execution("99", 10), execution("7", 9), execution("sim-x10", 9)]
    found += [execution("sim-x9", 9)]
    ordered = [e.execution_id for e in sorted(found, key=execution_order)]
    assert ordered == ["7", "sim-x9", "sim-x10", "99", "100"]
