"""The incremental indicators against TA-Lib itself, on the same inputs: the same warm-up
length (index of the first value) and every later value within 1e-9 relative (MACD's
differences: plus a few units in the last place of the inputs' size)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.indicators import ATR, EMA, MACD, RSI, SMA, BollingerBands


def close_enough(ours: float, theirs: float, scale: float = 0.0) -> bool:
    """Within 1e-9 relative; for a difference of two series (MACD), also within a few units
    in the last place of the inputs' size: 15,000,000 carries ~2e-9 of rounding, and
    subtracting two such EMAs leaves that absolute error on a result near zero."""
    slack = 8 * np.finfo(float).eps * scale
    return abs(ours - theirs) <= 1e-9 * max(1.0, abs(theirs)) + slack


def compare(ours: list, theirs: np.ndarray, scale: float = 0.0) -> None:
    first_theirs = int(np.argmax(~np.isnan(theirs))) if (~np.isnan(theirs)).any() else len(theirs)
    first_ours = next((i for i, v in enumerate(ours) if v is not None), len(ours))
    assert first_ours == first_theirs, "warm-up length differs from TA-Lib's"
    for index in range(first_ours, len(ours)):
        assert close_enough(ours[index], theirs[index], scale), (index, ours[index], theirs[index])


@st.composite
def series(draw: st.DrawFn) -> list[float]:
    """Random walks, trends, flat stretches, jumps; around 100 or around 15,000,000."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    length = draw(st.integers(1, 400))
    level = draw(st.sampled_from([100.0, 15_000_000.0, 0.01]))
    drift = draw(st.sampled_from([0.0, 0.001, -0.002, 0.01]))
    volatility = draw(st.sampled_from([0.0, 1e-7, 1e-4, 0.01, 0.05]))
    values = [level]
    for _ in range(length - 1):
        jump = rng.choice([0.0] * 30 + [0.2, -0.2])
        values.append(max(values[-1] * (1 + drift + rng.gauss(0, volatility) + jump), 1e-6))
    return values


periods = st.integers(2, 40)


@settings(max_examples=150, deadline=None)
@given(series(), st.integers(1, 40))
def test_sma(values: list[float], period: int) -> None:
    sma = SMA(period)
    compare([sma.update(v) for v in values], talib.SMA(np.array(values), period))


@settings(max_examples=150, deadline=None)
@given(series(), st.integers(1, 40))
def test_ema(values: list[float], period: int) -> None:
    ema = EMA(period)
    compare([ema.update(v) for v in values], talib.EMA(np.array(values), period))


@settings(max_examples=150, deadline=None)
@given(series(), periods)
def test_rsi(values: list[float], period: int) -> None:
    rsi = RSI(period)
    compare([rsi.update(v) for v in values], talib.RSI(np.array(values), period))


@settings(max_examples=150, deadline=None)
@given(series(), periods, st.sampled_from([1.0, 2.0, 2.5]), st.sampled_from([1.0, 2.0, 3.0]))
def test_bollinger_bands(values: list[float], period: int, up: float, down: float) -> None:
    bands = BollingerBands(period, up, down)
    out = [bands.update(v) for v in values]
    upper, middle, lower = talib.BBANDS(np.array(values), period, up, down, 0)
    compare([b and b.upper for b in out], upper)
    compare([b and b.middle for b in out], middle)
    compare([b and b.lower for b in out], lower)


@settings(max_examples=150, deadline=None)
@given(series(), st.integers(2, 15), st.integers(2, 40), st.integers(1, 12))
def test_macd(values: list[float], fast: int, slow: int, signal: int) -> None:
    macd = MACD(fast, slow, signal)
    out = [macd.update(v) for v in values]
    line, sig, hist = talib.MACD(np.array(values), fast, slow, signal)
    scale = max(abs(v) for v in values)
    compare([m and m.macd for m in out], line, scale)
    compare([m and m.signal for m in out], sig, scale)
    compare([m and m.hist for m in out], hist, scale)


@settings(max_examples=150, deadline=None)
@given(series(), st.integers(1, 30), st.integers(0, 2**32))
def test_atr(values: list[float], period: int, seed: int) -> None:
    rng = random.Random(seed)
    close = np.array(values)
    high = close * (1 + np.array([abs(rng.gauss(0, 0.002)) for _ in values]))
    low = close * (1 - np.array([abs(rng.gauss(0, 0.002)) for _ in values]))
    atr = ATR(period)
    compare(
        [atr.update(h, lo, c) for h, lo, c in zip(high, low, close, strict=True)],
        talib.ATR(high, low, close, period),
    )


def test_long_series_at_btc_prices_does_not_drift() -> None:
    """100,000 bars around 15,000,000 with small moves: where naive running variance fails."""
    rng = random.Random(42)
    values = [15_000_000.0]
    for _ in range(100_000):
        values.append(values[-1] + rng.gauss(0, 30))
    array = np.array(values)
    sma, rsi, bands = SMA(20), RSI(14), BollingerBands(20, 2.0, 2.0)
    compare([sma.update(v) for v in values], talib.SMA(array, 20))
    compare([rsi.update(v) for v in values], talib.RSI(array, 14))
    out = [bands.update(v) for v in values]
    upper, _, lower = talib.BBANDS(array, 20, 2.0, 2.0, 0)
    compare([b and b.upper for b in out], upper)
    compare([b and b.lower for b in out], lower)
    assert len(bands._window) == 20  # O(period) state after 100,000 updates
    assert len(sma._window) <= 20


def test_flat_series_rsi_is_zero_like_talib() -> None:
    values = [100.0] * 30
    rsi = RSI(14)
    ours = [rsi.update(v) for v in values]
    compare(ours, talib.RSI(np.array(values), 14))
    assert ours[-1] == 0.0


@pytest.mark.parametrize(
    ("make", "bad"),
    [(SMA, 0), (EMA, -1), (RSI, 1), (BollingerBands, 1), (ATR, 0), (SMA, 2.5)],
)
def test_bad_parameters_are_refused(make, bad) -> None:
    with pytest.raises(InvalidValue):
        make(bad)
