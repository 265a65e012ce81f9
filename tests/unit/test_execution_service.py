"""Signals through risk and sizing to orders on the stand-in GMO server, followed to the end."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from trading_engine.adapters.brokers.gmo import GmoBroker
from trading_engine.adapters.clocks.system import SystemClock
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.app.execution.order_monitor import OrderMonitor
from trading_engine.app.execution.reconciliation import reconcile
from trading_engine.app.execution.service import ExecutionService, ExecutionSettings
from trading_engine.domain.models import Signal
from trading_engine.domain.order import Order, order_id_for
from trading_engine.domain.risk import RiskLimits, TradingState
from trading_engine.domain.signal_decision import SignalDecision, decision_id_for
from trading_engine.domain.sizing import GMO_RULES
from trading_engine.domain.values import CancelType, OrderStatus, OrderType, Side
from trading_engine_standins.gmo import GmoStandIn

LIMITS = RiskLimits(
    max_position_size=Decimal("0.05"),
    max_drawdown_pct=Decimal(5),
    drawdown_window=timedelta(days=1),
    max_consecutive_losses=2,
    starting_equity=Decimal(1_000_000),
)
SETTINGS = ExecutionSettings(
    exchange="gmo",
    order_type=OrderType.MARKET,
    order_size=Decimal("0.02"),
    allow_short=True,
    rules=GMO_RULES,
)
_n = iter(range(1_000_000))


def signal(action: str, price: int = 5_000_000) -> Signal:
    return Signal(
        signal_id=f"s-{next(_n)}",
        exchange="gmo",
        symbol="BTC_JPY",
        strategy="moving_average_cross",
        action=action,
        confidence=Decimal(1),
        price_ref=Decimal(price),
        timestamp=datetime.now(UTC),
        indicators={"fast": 1.0},
        meta={},
    )


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.standin = GmoStandIn(api_key="k", api_secret="s")
        self.standin.rate_limit_per_second = None
        url = self.standin.start()
        self.broker = GmoBroker(url, "k", "s", timeout=1.0, backoff=0.01, lookup_delay=0.05)
        self.store = sqlite_event_store(tmp / "events.sqlite3")
        self.clock = SystemClock()
        self.service = ExecutionService(self.store, self.broker, self.clock, LIMITS, SETTINGS)
        self.monitor = OrderMonitor(
            self.store, self.broker, self.clock, on_result=self.result, not_found_limit=2
        )

    def result(self, symbol: str, pnl: Decimal) -> None:
        self.service.record_result(symbol, pnl)

    def run(self, action: str, price: int = 5_000_000) -> list:
        self.standin.set_last_price("BTC_JPY", Decimal(price))
        outcome = self.service.handle(signal(action, price))
        for order in outcome.orders:
            self.monitor.track(order)
        self.monitor.poll()
        return [self.store.get_order(o.id) for o in outcome.orders]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.broker.close()
    made.standin.stop()


def test_enter_long_then_reverse_uses_close_endpoints_and_ends_short(rig: Rig) -> None:
    (opened,) = rig.run("enter_long")
    assert (opened.status, opened.filled_size, opened.settle) == (
        OrderStatus.FILLED,
        Decimal("0.02"),
        "OPEN",
    )
    close, open_short = rig.run("enter_short", 5_100_000)
    assert (close.side, close.settle, close.status) == (Side.SELL, "CLOSE", OrderStatus.FILLED)
    assert (open_short.side, open_short.settle) == (Side.SELL, "OPEN")
    position = rig.store.find_position("gmo", "BTC_JPY")
    assert position is not None
    assert position.quantity == Decimal("-0.02")
    assert position.realized_pnl == Decimal(2000)  # (5.1M − 5.0M) × 0.02, no fees on BTC_JPY
    (short,) = rig.broker.positions("BTC_JPY")  # one position at GMO, not a long and a short
    assert (short.side, short.size) == (Side.SELL, Decimal("0.02"))


def test_a_signal_delivered_twice_yields_one_order(rig: Rig) -> None:
    first = signal("enter_long")
    rig.standin.set_last_price("BTC_JPY", Decimal(5_000_000))
    assert rig.service.handle(first).outcome == "approved"
    assert rig.service.handle(first).outcome == "duplicate"
    assert rig.standin.placements() == 1


def test_refusals_are_recorded_with_their_reason(rig: Rig) -> None:
    def service(size: str) -> ExecutionService:
        settings = ExecutionSettings("gmo", OrderType.MARKET, Decimal(size), True, GMO_RULES)
        return ExecutionService(rig.store, rig.broker, rig.clock, LIMITS, settings)

    s = signal("enter_long")
    outcome = service("0.0001").handle(s)
    assert outcome.outcome == "refused"
    assert "minimum size" in (outcome.reason or "")
    decision = rig.store.find(decision_id_for(s.signal_id))
    assert decision.outcome == "refused"
    assert "minimum size" in decision.reason

    s = signal("enter_long")
    outcome = service("0.06").handle(s)
    assert outcome.outcome == "refused"
    assert "MAX_POSITION_SIZE" in (outcome.reason or "")
    assert rig.store.find(decision_id_for(s.signal_id)).trading_state == "ACTIVE"
    assert rig.standin.placements() == 0


def test_exchange_rejection_is_recorded_with_code(rig: Rig) -> None:
    rig.standin.fail_next("/v1/order", code="ERR-201")
    (order,) = rig.run("enter_long")
    assert (order.status, order.reject_code) == (OrderStatus.REJECTED, "ERR-201")
    assert rig.standin.placements() == 0


def test_limit_order_filled_in_parts_and_late_cancel(rig: Rig) -> None:
    limit_settings = ExecutionSettings("gmo", OrderType.LIMIT, Decimal("0.03"), True, GMO_RULES)
    service = ExecutionService(rig.store, rig.broker, rig.clock, LIMITS, limit_settings)
    outcome = service.handle(signal("enter_long", 4_900_000))
    (order,) = outcome.orders
    rig.monitor.track(order)
    rig.standin.market_trade("BTC_JPY", Decimal(4_900_000), Decimal("0.01"))
    rig.monitor.poll()
    assert rig.store.get_order(order.id).status is OrderStatus.PARTIALLY_FILLED
    rig.standin.market_trade("BTC_JPY", Decimal(4_890_000), Decimal("0.01"))
    rig.monitor.poll()
    rig.monitor.poll()  # the same executions again: recorded once
    assert rig.store.get_order(order.id).filled_size == Decimal("0.02")
    rig.broker.cancel_order(order.exchange_order_id)
    rig.monitor.poll()
    done = rig.store.get_order(order.id)
    assert (done.status, done.cancel_type, done.filled_size) == (
        OrderStatus.CANCELED,
        CancelType.USER,
        Decimal("0.02"),
    )
    assert rig.monitor.tracked == set()
    assert rig.store.find_position("gmo", "BTC_JPY").quantity == Decimal("0.02")


def test_consecutive_losses_move_trading_to_reducing(rig: Rig) -> None:
    for _ in range(2):
        rig.run("enter_long", 5_000_000)
        rig.run("exit", 4_990_000)  # −200 JPY each round trip
    control = rig.service.control()
    assert control.state is TradingState.REDUCING
    refused = rig.service.handle(signal("enter_long"))
    assert refused.outcome == "refused"
    assert "REDUCING" in (refused.reason or "")
    reopened = rig.service.control()  # the state is in the store, so a restart keeps it
    assert reopened.state is TradingState.REDUCING


def test_kill_switch_halts_everything(rig: Rig) -> None:
    rig.service.halt("operator pressed the button")
    outcome = rig.service.handle(signal("enter_long"))
    assert outcome.outcome == "refused"
    assert "HALTED" in (outcome.reason or "")
    rig.service.resume("all clear")
    assert rig.service.handle(signal("enter_long")).outcome == "approved"


def test_a_lost_placement_answer_is_found_and_not_resent(rig: Rig) -> None:
    rig.standin.drop_next("/v1/order", accept=True)
    (order,) = rig.run("enter_long")
    assert order.exchange_order_id is not None
    assert order.status is OrderStatus.FILLED
    assert rig.standin.placements() == 1


def test_an_order_the_exchange_never_got_is_rejected_after_lookups(rig: Rig) -> None:
    rig.standin.drop_next("/v1/order", accept=False)
    outcome = rig.service.handle(signal("enter_long"))
    (order,) = outcome.orders
    assert order.exchange_order_id is None
    rig.monitor.track(order)
    rig.monitor.poll()
    rig.monitor.poll()
    final = rig.store.get_order(order.id)
    assert (final.status, final.reject_code) == (OrderStatus.REJECTED, "PLACEMENT_NOT_FOUND")
    assert rig.standin.placements() == 0
    assert order.id == order_id_for(outcome.signal_id, 0)


def _crash_before_sending(rig: Rig, action: str) -> Order:
    """The decision and its order stored, the process gone before the request went out."""
    sig = signal(action)
    order = ExecutionService._order(sig, *_planned(rig, sig))
    decision = SignalDecision.receive(sig, at=rig.clock.now())
    decision.approve([order.id], "ACTIVE", at=rig.clock.now())
    rig.store.save(decision, order)
    return order


def _planned(rig: Rig, sig: Signal) -> tuple:
    (plan,) = rig.service._plan(sig, Decimal(0))
    return plan, rig.clock.now()


def test_start_up_settles_a_placement_never_sent_before_any_signal(rig: Rig) -> None:
    """Reconciliation keeps looking until each lost placement is found or rejected: left
    live, it would count as exposure and size the next signal against a phantom position."""
    order = _crash_before_sending(rig, "enter_long")
    fresh = OrderMonitor(rig.store, rig.broker, rig.clock, not_found_limit=3)
    report = reconcile(
        rig.store, rig.broker, fresh, exchange="gmo", symbols=["BTC_JPY"], clock=rig.clock
    )
    final = rig.store.get_order(order.id)
    assert (final.status, final.reject_code) == (OrderStatus.REJECTED, "PLACEMENT_NOT_FOUND")
    assert fresh.pending_exposure("BTC_JPY") == 0
    assert report.placements_found == 0
    assert rig.standin.placements() == 0


def test_a_fill_found_by_reconciliation_leaves_the_exposure_at_once(rig: Rig) -> None:
    """A placement whose answer was lost, filled at the exchange: once reconciliation has
    recorded the fill, the position holds it and the exposure no longer does."""
    rig.standin.set_last_price("BTC_JPY", Decimal(5_000_000))
    rig.standin.drop_next("/v1/order", accept=True)
    rig.broker._lookup_attempts = 0  # the crash: no lookup in the process that sent it
    outcome = rig.service.handle(signal("enter_long"))
    (order,) = outcome.orders
    assert order.exchange_order_id is None
    fresh = OrderMonitor(rig.store, rig.broker, rig.clock, not_found_limit=3)
    reconcile(rig.store, rig.broker, fresh, exchange="gmo", symbols=["BTC_JPY"], clock=rig.clock)
    assert rig.store.get_order(order.id).status is OrderStatus.FILLED
    position = rig.store.find_position("gmo", "BTC_JPY")
    assert position is not None
    assert position.quantity == Decimal("0.02")
    assert fresh.pending_exposure("BTC_JPY") == 0


def test_a_signal_that_needs_no_order_is_said_so_in_the_log(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """An exit with no position open: approved with no order, and a `decision` record under
    the signal's id, so the log does not end at a lone signal."""
    with caplog.at_level("INFO", logger="trading_engine.app.execution.service"):
        outcome = rig.service.handle(signal("exit"))
    assert (outcome.outcome, outcome.orders) == ("approved", ())
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "decision"]
    assert record.correlation_id == outcome.signal_id
    assert record.fields["position"] == "0"
