"""Seeded synthetic OHLCV bars: a first backtest without any data file.

A geometric random walk with alternating trend regimes (so moving averages cross and RSI
reaches its bands), prices rounded to whole units, every bar with volume (a backtest's
market orders always have something to fill against). Same seed, same bars, everywhere:
numpy's PCG64 generator is specified bit for bit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np

from trading_engine.domain.models import OHLCV
from trading_engine.domain.values import Exchange, Symbol, Timeframe


def synthetic_bars(
    symbol: str = "BTC_JPY",
    exchange: str = "simulated",
    *,
    start: datetime,
    seed: int,
    count: int,
    timeframe: str = "1m",
    start_price: float = 15_000_000.0,
    volatility: float = 0.001,
    trend: float = 0.4,
) -> list[OHLCV]:
    """`volatility`: standard deviation of a bar's log return; `trend`: a trending regime's
    drift per bar, in units of `volatility`."""
    rng = np.random.default_rng(seed)
    regime_lengths = rng.integers(30, 240, size=count // 30 + 2)
    drifts = rng.choice([-trend, 0.0, trend], size=regime_lengths.size) * volatility
    drift = np.repeat(drifts, regime_lengths)[:count]
    steps = drift + volatility * rng.standard_normal(count)
    close = np.maximum(1.0, np.round(start_price * np.exp(np.cumsum(steps))))
    open_ = np.concatenate([[start_price], close[:-1]])
    wick = np.abs(rng.standard_normal(count)) * volatility * 0.5 * close
    high = np.round(np.maximum(open_, close) + wick)
    low = np.maximum(1.0, np.round(np.minimum(open_, close) - wick))
    volume = np.round(rng.uniform(0.5, 20.0, count), 4)
    frame = Timeframe(timeframe)
    times = _bar_times(frame, start, count)
    return [
        OHLCV(
            Exchange(exchange),
            Symbol(symbol),
            frame,
            times[n],
            Decimal(int(open_[n])),
            Decimal(int(high[n])),
            Decimal(int(low[n])),
            Decimal(int(close[n])),
            Decimal(str(volume[n])),
        )
        for n in range(count)
    ]


def _bar_times(frame: Timeframe, start: datetime, count: int) -> list[datetime]:
    """Consecutive bar starts: fixed steps, or calendar weeks/months one after the other."""
    if not frame.is_calendar:
        step = timedelta(seconds=frame.seconds)
        return [start + n * step for n in range(count)]
    times = [frame.start_of(start)]
    while len(times) < count:
        times.append(frame.end_of(times[-1]))
    return times[:count]
