"""Stale signals never trade live: judged on the feed's clock, recorded as refused."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from trading_engine.adapters.brokers.simulated import SimulatedExchange
from trading_engine.adapters.clocks.manual import ManualClock
from trading_engine.adapters.eventstore.memory import memory_event_store
from trading_engine.adapters.marketdata.in_process import InProcessLog
from trading_engine.adapters.signals.in_process_bus import (
    InProcessSignalPublisher,
    InProcessSignalSubscriber,
)
from trading_engine.app.bootstrap.execution import execution_loop, execution_settings
from trading_engine.app.execution.loop import signal_age
from trading_engine.app.runtime.config import load_settings
from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.models import Signal
from trading_engine.domain.signal_age import SignalAgeLimit
from trading_engine.domain.signal_decision import decision_id_for
from trading_engine.ports.signal_bus import SignalEntry

CLOSE = datetime(2025, 7, 1, 21, 5, tzinfo=UTC)  # a bar of last year: the feed says when now is


def a_signal(signal_id: str = "s-1", timeframe: str | None = "1m", action: str = "enter_long"):
    return Signal(
        signal_id=signal_id,
        exchange="simulated",
        symbol="BTC_JPY",
        strategy="moving_average_cross",
        action=action,
        confidence=Decimal(1),
        price_ref=Decimal(5_000_000),
        timestamp=CLOSE,
        meta={} if timeframe is None else {"timeframe": timeframe},
    )


def test_the_default_is_three_lengths_of_the_signals_own_bar() -> None:
    limit = SignalAgeLimit(default_bar_seconds=300)
    assert limit.limit_for(a_signal(timeframe="1m")) == timedelta(minutes=3)
    assert limit.limit_for(a_signal(timeframe="1s")) == timedelta(seconds=3)
    assert limit.limit_for(a_signal(timeframe=None)) == timedelta(minutes=15)
    assert SignalAgeLimit(seconds=30).limit_for(a_signal(timeframe="1h")) == timedelta(seconds=30)
    with pytest.raises(InvalidValue):
        SignalAgeLimit(seconds=0)


def test_a_signal_older_than_the_limit_is_refused_with_its_age() -> None:
    limit = SignalAgeLimit()
    assert limit.refusal(a_signal(), timedelta(seconds=180)) is None
    reason = limit.refusal(a_signal(), timedelta(seconds=181))
    assert reason is not None
    assert reason.startswith("stale signal: its bar (ending 2025-07-01T21:05:00+00:00) closed")
    assert "181.0 s ago on the feed's clock" in reason
    assert "MAX_SIGNAL_AGE_SECONDS" in reason


def test_the_age_grows_by_the_time_the_entry_waited_in_the_stream() -> None:
    entered = time.monotonic() - 100  # published 100 s ago, then nobody read it
    two = timedelta(seconds=2)
    late = signal_age(SignalEntry("1-0", a_signal(), two, entered))
    assert late is not None
    assert late >= timedelta(seconds=102)
    assert signal_age(SignalEntry("1-0", a_signal(), two, None)) == two  # read as it came
    assert signal_age(SignalEntry("1-0", a_signal(), None, entered)) is None  # not said


def run_signals(settings, published: list[tuple[Signal, timedelta | None]], clock=None):
    log = InProcessLog()
    publisher = InProcessSignalPublisher(log)
    for signal, age in published:
        publisher.publish(signal, age=age)
    store = memory_event_store()
    exchange = SimulatedExchange()
    exchange.set_last_price("BTC_JPY", Decimal(5_000_000))
    loop = execution_loop(
        settings,
        store,
        exchange,
        InProcessSignalSubscriber(log, "simulated", consumer="e"),
        clock,
    )
    loop.start()
    loop.step(block_ms=0)
    return loop, store


def test_a_stale_signal_is_recorded_as_refused_and_never_sent() -> None:
    settings = load_settings(EXCHANGE_NAME="simulated", DATABASE_URL="memory://")
    fresh, stale = a_signal("fresh"), a_signal("stale")
    loop, store = run_signals(
        settings, [(fresh, timedelta(seconds=2)), (stale, timedelta(minutes=10))]
    )
    assert (loop.stats.approved, loop.stats.refused, loop.stats.orders) == (1, 1, 1)
    assert loop.stats.rejections == {"stale_signal": 1}
    decision = store.find(decision_id_for("stale"))
    assert decision.outcome == "refused"
    assert decision.reason.startswith("stale signal")


def test_without_an_age_the_signal_is_judged_by_the_engines_clock() -> None:
    settings = load_settings(EXCHANGE_NAME="simulated", DATABASE_URL="memory://")
    loop, _ = run_signals(settings, [(a_signal("no-feed-time"), None)])  # host clock: 2026
    assert loop.stats.rejections == {"stale_signal": 1}
    clock = ManualClock(CLOSE + timedelta(seconds=5))
    loop, _ = run_signals(settings, [(a_signal("on-time"), None)], clock)
    assert (loop.stats.approved, loop.stats.orders) == (1, 1)


def test_the_limit_can_be_set_or_turned_off() -> None:
    ten_minutes_late = [(a_signal("late"), timedelta(minutes=10))]
    longer = load_settings(
        EXCHANGE_NAME="simulated", DATABASE_URL="memory://", MAX_SIGNAL_AGE_SECONDS=900
    )
    assert run_signals(longer, ten_minutes_late)[0].stats.approved == 1
    off = load_settings(
        EXCHANGE_NAME="simulated", DATABASE_URL="memory://", MAX_SIGNAL_AGE_SECONDS=0
    )
    assert execution_settings(off).signal_age is None
    assert run_signals(off, ten_minutes_late)[0].stats.approved == 1
