"""What the report's charts draw, computed from a backtest's result: candles, the strategy's
indicator lines, fewer points for long lines, and the times in Bokeh's unit.

Large runs stay small and quick: more than :data:`MAX_CANDLES` bars are merged into that many
candles (first open, highest high, lowest low, last close, summed volume), and the equity and
drawdown lines keep each bucket's lowest and highest points (:func:`minmax_indices`). No Bokeh
here: these are plain numpy arrays, tested without a browser.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from trading_engine.app.backtest.results import BacktestResult, OpenTrade
from trading_engine.domain.indicators import RSI, SMA

__all__ = [
    "MAX_CANDLES",
    "MAX_LINE_BUCKETS",
    "Candles",
    "Indicators",
    "bar_period_ms",
    "candles_for",
    "epoch_ms",
    "minmax_indices",
    "open_return",
    "strategy_indicators",
]

MAX_CANDLES = 5000  # candles drawn per symbol; more bars are merged into this many
MAX_LINE_BUCKETS = 2500  # equity/drawdown: lowest and highest point of each bucket


def epoch_ms(ts: datetime) -> float:
    """Epoch milliseconds (Bokeh's datetime axis unit); naive times are UTC."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp() * 1000.0


def bar_period_ms(xs: np.ndarray) -> float:
    """The bars' usual spacing: the median gap (a day's worth when there is one bar)."""
    if len(xs) < 2:
        return 86_400_000.0
    gaps = np.diff(xs)
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) if len(gaps) else 86_400_000.0


@dataclass
class Candles:
    """One symbol's bars as drawn: merged ``per`` at a time when there are too many."""

    symbol: str
    bars: int  # bars in the data
    per: int  # bars per candle
    period_ms: float  # spacing of the data's bars
    x: np.ndarray  # candle centre
    t0: np.ndarray  # first bar's time
    t1: np.ndarray  # last bar's time
    width: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    last: np.ndarray  # index (in the data's bars) of each candle's last bar
    times: np.ndarray  # every bar's time
    closes: np.ndarray  # every bar's close, for the indicators
    has_ohlc: bool = True
    lines: dict[str, np.ndarray] = field(default_factory=dict)


def candles_for(symbol: str, result: BacktestResult, limit: int = MAX_CANDLES) -> Candles | None:
    """``symbol``'s candles, at most ``limit`` (None: no bars nor prices for it)."""
    bars = result.bars.get(symbol)
    if bars:
        xs = np.array([epoch_ms(b.timestamp) for b in bars], dtype=float)
        o = np.array([float(b.open) for b in bars], dtype=float)
        h = np.array([float(b.high) for b in bars], dtype=float)
        lo = np.array([float(b.low) for b in bars], dtype=float)
        c = np.array([float(b.close) for b in bars], dtype=float)
        v = np.array([float(b.volume) for b in bars], dtype=float)
        has_ohlc = True
    else:  # only closes known: flat candles, drawn as a line
        series = result.prices.get(symbol) or []
        if not series:
            return None
        xs = np.array([epoch_ms(ts) for ts, _ in series], dtype=float)
        c = np.array([float(p) for _, p in series], dtype=float)
        o = h = lo = c
        v = np.zeros_like(c)
        has_ohlc = False
    n = len(xs)
    period = bar_period_ms(xs)
    per = max(1, math.ceil(n / limit))
    starts = np.arange(0, n, per)
    ends = np.minimum(starts + per, n) - 1
    if per == 1:
        t0 = t1 = xs
        agg = (o, h, lo, c, v)
    else:
        t0, t1 = xs[starts], xs[ends]
        agg = (
            o[starts],
            np.maximum.reduceat(h, starts),
            np.minimum.reduceat(lo, starts),
            c[ends],
            np.add.reduceat(v, starts),
        )
    return Candles(
        symbol=symbol,
        bars=n,
        per=per,
        period_ms=period,
        x=(t0 + t1) / 2,
        t0=t0,
        t1=t1,
        width=(t1 - t0 + period) * 0.8,
        open=agg[0],
        high=agg[1],
        low=agg[2],
        close=agg[3],
        volume=agg[4],
        last=ends,
        times=xs,
        closes=c,
        has_ohlc=has_ohlc,
    )


def _run(indicator: Any, closes: np.ndarray) -> np.ndarray:
    """An indicator of domain.indicators fed every close, as the strategy feeds it."""
    out = np.full(len(closes), np.nan)
    for i, close in enumerate(closes.tolist()):
        value = indicator.update(close)
        if value is not None:
            out[i] = value
    return out


def _rolling_pstd(closes: np.ndarray, period: int) -> np.ndarray:
    """Population standard deviation over ``period`` closes (two-pass, so stable at any
    price level: BollingerBands' exact deviation, to display precision)."""
    out = np.full(len(closes), np.nan)
    if len(closes) >= period:
        windows = np.lib.stride_tricks.sliding_window_view(closes, period)
        out[period - 1 :] = windows.std(axis=1)
    return out


def _int(params: dict[str, Any], key: str, default: int) -> int:
    try:
        value = int(params.get(key, default))
    except (TypeError, ValueError):
        return default
    return value if value >= 1 else default


def _float(params: dict[str, Any], key: str, default: float) -> float:
    try:
        value = float(params.get(key, default))
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


@dataclass
class Indicators:
    """What the strategy looked at: lines over the price, and an RSI panel."""

    price: dict[str, tuple[np.ndarray, str, str]] = field(default_factory=dict)  # name → ...
    band: tuple[str, str] | None = None  # (upper, lower) names filled between
    rsi: tuple[str, np.ndarray, float, float] | None = None  # label, values, low, high


def strategy_indicators(strategy: str, params: dict[str, Any], closes: np.ndarray) -> Indicators:
    """The strategy's indicators recomputed from the closes (unknown strategy: none)."""
    found = Indicators()
    try:
        if strategy == "moving_average_cross":
            fast, slow = _int(params, "fast_window", 5), _int(params, "slow_window", 20)
            found.price[f"SMA({fast})"] = (_run(SMA(fast), closes), "#ff7f0e", "solid")
            found.price[f"SMA({slow})"] = (_run(SMA(slow), closes), "#1f5fbf", "solid")
        elif strategy == "bollinger_bands":
            period, k = _int(params, "period", 20), _float(params, "std_dev", 2.0)
            middle = _run(SMA(period), closes)
            deviation = _rolling_pstd(closes, period)
            found.price[f"upper {k:g}σ"] = (middle + k * deviation, "#8c6bb1", "dashed")
            found.price[f"SMA({period})"] = (middle, "#6a3d9a", "solid")
            found.price[f"lower {k:g}σ"] = (middle - k * deviation, "#8c6bb1", "dashed")
            found.band = (f"upper {k:g}σ", f"lower {k:g}σ")
        elif strategy == "rsi":
            period = max(2, _int(params, "period", 14))
            low, high = _float(params, "oversold", 30.0), _float(params, "overbought", 70.0)
            found.rsi = (f"RSI({period})", _run(RSI(period), closes), low, high)
    except Exception:  # a report is never lost to an odd parameter
        return Indicators()
    return found


def minmax_indices(values: Sequence[np.ndarray], buckets: int = MAX_LINE_BUCKETS) -> np.ndarray:
    """Indices keeping, for each of ``buckets`` runs, every series' lowest and highest
    point (so spikes and troughs survive), plus the first and last; all when few."""
    n = len(values[0]) if values else 0
    if n <= 2 * buckets * max(1, len(values)):
        return np.arange(n)
    keep = [np.array([0, n - 1])]
    for chunk in np.array_split(np.arange(n), buckets):
        for series in values:
            part = series[chunk]
            if np.isnan(part).all():
                continue
            keep.append(chunk[[int(np.nanargmin(part)), int(np.nanargmax(part))]])
    return np.unique(np.concatenate(keep))


def open_return(trade: OpenTrade) -> float:
    """An open trade's return at the last close, as `trade_return` computes a closed one's:
    the price move less the fees so far (the entry leg's); NaN without an entry price or size."""
    sign = -1.0 if trade.side == "SHORT" else 1.0
    entry = float(trade.entry_price)
    if not entry or not trade.size:
        return math.nan
    gross = sign * (float(trade.last_price) / entry - 1)
    return gross - float(trade.fees) / (abs(float(trade.size)) * entry)
