"""Rejections counted by a bounded reason: the risk or sizing rule behind a refusal (never its
text, which carries sizes and operator notes), the exchange's code for a rejected order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from trading_engine.adapters.brokers.simulated import SimulatedExchange
from trading_engine.adapters.clocks.system import SystemClock
from trading_engine.adapters.eventstore.memory import memory_event_store
from trading_engine.adapters.marketdata.in_process import InProcessLog
from trading_engine.adapters.signals.in_process_bus import (
    InProcessSignalPublisher,
    InProcessSignalSubscriber,
)
from trading_engine.app.bootstrap.execution import execution_loop, execution_settings, risk_limits
from trading_engine.app.execution.loop import ExecutionStats
from trading_engine.app.execution.service import ExecutionService
from trading_engine.app.runtime.config import load_settings
from trading_engine.domain.errors import DomainError
from trading_engine.domain.models import Signal
from trading_engine.domain.risk import RiskLimits, TradingState, refusal_for
from trading_engine.domain.sizing import GMO_RULES, PlannedOrder, plan_orders
from trading_engine.domain.values import OrderType, Side, SignalAction

LIMITS = RiskLimits(
    max_position_size=Decimal("0.05"),
    max_drawdown_pct=Decimal(10),
    drawdown_window=timedelta(days=1),
    max_consecutive_losses=3,
    starting_equity=Decimal(1_000_000),
)


def settings_at_any_age(**values):
    """The signals here are stamped on a fixed day, and their age is not what these tests are
    about (tests/unit/test_signal_age.py is): MAX_SIGNAL_AGE_SECONDS=0 turns that check off."""
    return load_settings(MAX_SIGNAL_AGE_SECONDS=0, **values)


def risk_refusal(state: TradingState, note: str, position: str, buy: str) -> str | None:
    order = PlannedOrder(0, Side.BUY, OrderType.MARKET, Decimal(buy), None, "OPEN")
    return refusal_for(state, note, Decimal(position), [order], LIMITS)


def sizing_refusal(action: SignalAction, size: str, allow_short: bool = False) -> str:
    with pytest.raises(DomainError) as refused:
        plan_orders(
            action,
            Decimal(0),
            order_size=Decimal(size),
            order_type=OrderType.MARKET,
            price_ref=Decimal(5_000_000),
            rules=GMO_RULES["BTC_JPY"],
            allow_short=allow_short,
        )
    return str(refused.value)


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        # the operator's note quotes another rule's words: the state decides
        (risk_refusal(TradingState.HALTED, "above MAX_POSITION_SIZE?", "0", "0.01"), "halted"),
        (risk_refusal(TradingState.REDUCING, "3 losses", "0", "0.01"), "reducing_only"),
        (risk_refusal(TradingState.ACTIVE, "", "0.04", "0.02"), "max_position_size"),
        (sizing_refusal(SignalAction.ENTER_SHORT, "0.01"), "shorting_disabled"),
        (sizing_refusal(SignalAction.ENTER_LONG, "0.0001"), "below_min_size"),
        ("no size/tick rules configured for DOGE_JPY", "no_symbol_rules"),
        ("something new", "other"),
        (None, "other"),
    ],
)
def test_a_refusal_is_counted_under_its_rule(reason: str | None, category: str) -> None:
    assert ExecutionStats.refusal_category(reason) == category


def a_signal(signal_id: str, action: str) -> Signal:
    return Signal(
        signal_id=signal_id,
        exchange="simulated",
        symbol="BTC",  # spot: the exchange checks the funds (leverage BTC_JPY would not)
        strategy="rsi",
        action=action,
        confidence=Decimal(1),
        price_ref=Decimal(5_000_000),
        timestamp=datetime(2026, 5, 1, tzinfo=UTC),
        indicators={},
        meta={},
    )


def test_the_loop_counts_refusals_by_rule_and_exchange_rejections_by_code() -> None:
    settings = settings_at_any_age(
        EXCHANGE_NAME="simulated",
        ORDER_SIZE=Decimal("0.02"),
        DATABASE_URL="memory://",
    )
    # 1,000 JPY cannot buy 0.02 BTC at 5,000,000: the exchange answers ERR-201
    exchange = SimulatedExchange(balances={"JPY": Decimal(1_000), "BTC": Decimal(0)})
    exchange.set_last_price("BTC", Decimal(5_000_000))
    store = memory_event_store()
    log = InProcessLog()
    publisher = InProcessSignalPublisher(log)
    loop = execution_loop(
        settings, store, exchange, InProcessSignalSubscriber(log, "simulated", consumer="t")
    )
    loop.start()

    publisher.publish(a_signal("r-1", "enter_long"))
    publisher.publish(a_signal("r-2", "enter_short"))  # ENABLE_SHORTING is false
    loop.step(block_ms=0)
    assert loop.stats.rejections == {"ERR-201": 1, "shorting_disabled": 1}

    ExecutionService(
        store, exchange, SystemClock(), risk_limits(settings), execution_settings(settings)
    ).halt("desk says stop")
    publisher.publish(a_signal("r-3", "enter_long"))
    loop.step(block_ms=0)
    assert loop.stats.rejections == {"ERR-201": 1, "shorting_disabled": 1, "halted": 1}
    assert (loop.stats.refused, loop.stats.orders) == (2, 1)
