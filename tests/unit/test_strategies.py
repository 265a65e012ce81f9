"""The three strategies on hand-made closes: what each decides, when, and with which id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from trading_engine.adapters.strategies.registry import STRATEGIES, UnknownStrategy, create_strategy
from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.models import OHLCV, Signal
from trading_engine.domain.values import Exchange, SignalAction, Symbol, Timeframe

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def bars(closes: list[float]) -> list[OHLCV]:
    out = []
    for i, close in enumerate(closes):
        price = Decimal(str(close))
        out.append(
            OHLCV(
                Exchange("gmo"),
                Symbol("BTC_JPY"),
                Timeframe("1m"),
                T0 + timedelta(minutes=i),
                price,
                price,
                price,
                price,
                Decimal(1),
            )
        )
    return out


def decisions(strategy, closes: list[float]) -> list[tuple[int, SignalAction]]:
    found = []
    for index, bar in enumerate(bars(closes)):
        signal = strategy.decide(bar, strategy.calculate_indicators(bar))
        if signal is not None:
            assert isinstance(signal, Signal)
            found.append((index, signal.action))
    return found


V_SHAPE = (
    [110 - i for i in range(10)]
    + [100 + 2 * i for i in range(10)]
    + [118 - 3 * i for i in range(10)]
)


def test_moving_average_cross_long_then_exit() -> None:
    strategy = create_strategy("moving_average_cross", fast_window=2, slow_window=4)
    found = decisions(strategy, V_SHAPE)
    assert [action for _, action in found] == [SignalAction.ENTER_LONG, SignalAction.EXIT]
    # the golden cross comes a couple of bars after the bottom at index 9
    assert 10 <= found[0][0] <= 13


def test_moving_average_cross_shorts_when_allowed() -> None:
    strategy = create_strategy(
        "moving_average_cross", fast_window=2, slow_window=4, allow_short=True
    )
    assert [a for _, a in decisions(strategy, V_SHAPE)] == [
        SignalAction.ENTER_LONG,
        SignalAction.ENTER_SHORT,
    ]


def test_rsi_fires_on_entering_a_zone_once() -> None:
    strategy = create_strategy("rsi", period=3, oversold=30, overbought=70)
    closes = [100, 99, 98, 97, 96, 95, 94, 95, 97, 99, 101, 103, 105, 104]
    found = decisions(strategy, closes)
    assert [a for _, a in found] == [SignalAction.ENTER_LONG, SignalAction.EXIT]
    assert found[0][0] == 3  # first RSI value (after period + 1 closes) is already oversold


def test_bollinger_touches() -> None:
    strategy = create_strategy("bollinger_bands", period=5, std_dev=1.0)
    closes = [100, 101, 100, 101, 100, 90, 91, 92, 100, 101, 100, 101, 112]
    found = decisions(strategy, closes)
    # 90 breaks below the band; the rebound to 100 breaks above it; 112 does again after
    # closes inside the band in between
    assert found == [
        (5, SignalAction.ENTER_LONG),
        (8, SignalAction.EXIT),
        (12, SignalAction.EXIT),
    ]


def test_signal_ids_are_stable_per_bar_and_parameters() -> None:
    first = create_strategy("moving_average_cross", fast_window=2, slow_window=4)
    second = create_strategy("moving_average_cross", fast_window=2, slow_window=4)
    other = create_strategy("moving_average_cross", fast_window=2, slow_window=5)
    ids = []
    for strategy in (first, second, other):
        signals = [strategy.decide(b, strategy.calculate_indicators(b)) for b in bars(V_SHAPE)]
        ids.append([s.signal_id for s in signals if s is not None])
    assert ids[0] == ids[1]
    assert not set(ids[0]) & set(ids[2])


def test_signal_carries_indicators_meta_and_bar_close_time() -> None:
    strategy = create_strategy("moving_average_cross", fast_window=2, slow_window=4)
    signal = next(
        s for b in bars(V_SHAPE) if (s := strategy.decide(b, strategy.calculate_indicators(b)))
    )
    assert set(signal.indicators) == {"sma_fast", "sma_slow"}
    assert signal.meta["timeframe"] == "1m"
    assert signal.timestamp == datetime.fromisoformat(signal.meta["bar_start"]) + timedelta(
        minutes=1
    )
    assert Decimal(0) <= signal.confidence <= Decimal(1)
    assert signal.confidence == signal.confidence.quantize(Decimal("0.01"))


def test_registry() -> None:
    assert set(STRATEGIES) == {"moving_average_cross", "rsi", "bollinger_bands"}
    with pytest.raises(UnknownStrategy, match="known: bollinger_bands"):
        create_strategy("lstm")
    with pytest.raises(UnknownStrategy, match="bad parameters"):
        create_strategy("rsi", window=3)
    with pytest.raises(InvalidValue):
        create_strategy("moving_average_cross", fast_window=20, slow_window=5)
