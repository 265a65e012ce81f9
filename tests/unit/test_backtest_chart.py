"""The interactive report (app.backtest_chart): what it computes and says, without a browser
(tests/integration/test_report_browser.py opens one)."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from trading_engine.app.backtest.chart_data import Indicators
from trading_engine.app.backtest.chart_data import candles_for as _candles
from trading_engine.app.backtest.chart_data import minmax_indices as _minmax_indices
from trading_engine.app.backtest.chart_data import strategy_indicators as _indicators
from trading_engine.app.backtest.report import render_report
from trading_engine.app.backtest.results import (
    BacktestResult,
    ClosedTrade,
    EquityPoint,
    OpenTrade,
    compute_metrics,
)
from trading_engine.domain.indicators import RSI, BollingerBands
from trading_engine.domain.models import OHLCV
from trading_engine.domain.values import Exchange, Symbol, Timeframe

START = datetime(2024, 1, 1, tzinfo=UTC)


def _bars(symbol: str, n: int, *, volume: int = 5, seed: int = 3) -> list[OHLCV]:
    rng = np.random.default_rng(seed)
    closes = 1000 + np.cumsum(rng.normal(0, 3, n))
    out = []
    for i, close in enumerate(closes):
        c = Decimal(str(round(float(close), 2)))
        o = c + Decimal(str(round(float(rng.normal(0, 1)), 2)))
        high, low = max(o, c) + Decimal(i % 3), min(o, c) - Decimal(i % 5)
        out.append(
            OHLCV(
                Exchange("sim"),
                Symbol(symbol),
                Timeframe("1h"),
                START + timedelta(hours=i),
                o,
                high,
                low,
                c,
                Decimal(volume + i % 7) if volume else Decimal(0),
            )
        )
    return out


def _result(bars: dict[str, list[OHLCV]], **parameters: object) -> BacktestResult:
    first = next(iter(bars.values()))
    entry, exit_ = first[10], first[20]
    trade = ClosedTrade(
        symbol=str(entry.symbol),
        side="LONG",
        size=Decimal(2),
        entry_time=entry.timestamp,
        exit_time=exit_.timestamp,
        entry_price=entry.open,
        exit_price=exit_.open,
        pnl=(exit_.open - entry.open) * 2 - Decimal(1),
        fees=Decimal(1),
        entry_bar=10,
        exit_bar=20,
    )
    last = first[-1]
    still_open = OpenTrade(
        symbol=str(entry.symbol),
        side="SHORT",
        size=Decimal(1),
        entry_time=first[30].timestamp,
        entry_price=first[30].open,
        fees=Decimal("0.5"),
        entry_bar=30,
        last_price=last.close,
        pnl=first[30].open - last.close - Decimal("0.5"),
    )
    return BacktestResult(
        initial_cash=Decimal(10_000),
        equity=[
            EquityPoint(b.timestamp, Decimal(10_000) + b.close - first[0].close, True)
            for b in first
        ],
        trades=[trade],
        fees_paid=Decimal("1.5"),
        prices={s: [(b.timestamp, b.close) for b in series] for s, series in bars.items()},
        parameters=parameters or {"strategy": "moving_average_cross"},
        open_trades=[still_open],
        bars=bars,
    )


def test_many_bars_become_ohlc_correct_candles() -> None:
    bars = _bars("BTC_JPY", 1003)
    result = _result({"BTC_JPY": bars})
    candles = _candles("BTC_JPY", result, limit=100)
    assert candles is not None
    assert candles.per == 11  # ceil(1003 / 100)
    assert len(candles.x) == 92  # 91 full candles and the 2 bars left
    for k, start in enumerate(range(0, 1003, 11)):
        group = bars[start : start + 11]
        assert candles.open[k] == float(group[0].open)
        assert candles.close[k] == float(group[-1].close)
        assert candles.high[k] == max(float(b.high) for b in group)
        assert candles.low[k] == min(float(b.low) for b in group)
        assert candles.volume[k] == sum(float(b.volume) for b in group)
        assert candles.t0[k] == group[0].timestamp.timestamp() * 1000
        assert candles.t1[k] == group[-1].timestamp.timestamp() * 1000
    assert candles.last[-1] == 1002


def test_few_bars_are_drawn_one_candle_each() -> None:
    bars = _bars("BTC_JPY", 50)
    candles = _candles("BTC_JPY", _result({"BTC_JPY": bars}))
    assert candles is not None
    assert candles.per == 1
    assert list(candles.close) == [float(b.close) for b in bars]


def test_indicator_lines_are_the_strategies_own() -> None:
    closes = np.array([float(b.close) for b in _bars("X", 300)])
    series = pd.Series(closes)

    cross = _indicators("moving_average_cross", {"fast_window": 5, "slow_window": 12}, closes)
    assert list(cross.price) == ["SMA(5)", "SMA(12)"]
    for name, window in (("SMA(5)", 5), ("SMA(12)", 12)):
        np.testing.assert_allclose(
            cross.price[name][0], series.rolling(window).mean().to_numpy(), rtol=1e-12
        )

    bands = _indicators("bollinger_bands", {"period": 20, "std_dev": 2.5}, closes)
    reference = BollingerBands(20, 2.5, 2.5)
    expected = [reference.update(c) for c in closes]
    upper, middle, lower = (bands.price[k][0] for k in ("upper 2.5σ", "SMA(20)", "lower 2.5σ"))
    for i, value in enumerate(expected):
        if value is None:
            assert np.isnan(middle[i])
        else:
            assert middle[i] == value.middle
            assert upper[i] == pytest.approx(value.upper, rel=1e-12)
            assert lower[i] == pytest.approx(value.lower, rel=1e-12)
    assert bands.band == ("upper 2.5σ", "lower 2.5σ")

    rsi = _indicators("rsi", {"period": 9, "oversold": 25, "overbought": 80}, closes)
    assert rsi.price == {}
    assert rsi.rsi is not None
    label, values, low, high = rsi.rsi
    reference_rsi = RSI(9)
    expected_rsi = [reference_rsi.update(c) for c in closes]
    assert (label, low, high) == ("RSI(9)", 25.0, 80.0)
    assert [None if np.isnan(v) else v for v in values] == expected_rsi

    assert _indicators("my_own_strategy", {"x": 1}, closes) == Indicators()
    odd = _indicators("moving_average_cross", {"fast_window": "x", "slow_window": None}, closes)
    assert list(odd.price) == ["SMA(5)", "SMA(20)"]  # the strategy's defaults


def test_downsampling_keeps_every_extreme() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(0, 1, 100_000)
    values[12_345], values[67_890] = 50.0, -50.0
    keep = _minmax_indices([values], buckets=500)
    assert len(keep) <= 1002
    assert {0, 12_345, 67_890, 99_999} <= set(keep.tolist())
    assert np.all(np.diff(keep) > 0)  # in time order
    assert len(_minmax_indices([values[:900]], buckets=500)) == 900  # few: all kept


def test_report_shows_open_trades_and_says_they_are_not_counted() -> None:
    result = _result(
        {"BTC_JPY": _bars("BTC_JPY", 120)},
        strategy="moving_average_cross",
        strategy_parameters={"fast_window": 3, "slow_window": 8},
    )
    page = render_report(result, compute_metrics(result))
    table = re.search(r'<table id="trades">.*?</table>', page, re.S).group(0)
    assert table.count("<td>closed</td>") == 1
    assert table.count("<td>open</td>") == 1
    open_row = re.search(r'<tr class="open".*?</tr>', table, re.S).group(0)
    assert "<td>SHORT</td>" in open_row
    assert open_row.count("<td>—</td>") == 1  # no exit time
    assert "not</b> in the trade statistics" in page
    assert "1 closed (+1 open, not counted)" in page  # the # trades metric
    assert "trades (1 + 1 open)" in page  # the price panel's legend


def test_report_without_volume_or_bars_and_with_many_symbols() -> None:
    symbols = ["A_JPY", "B_JPY", "C_JPY", "D_JPY", "E_JPY"]
    bars = {s: _bars(s, 60, volume=0, seed=i) for i, s in enumerate(symbols)}
    page = render_report(_result(bars), compute_metrics(_result(bars)))
    assert "A_JPY: the data have no volume (all 0), so no volume panel." in page
    assert "Price panels for the first 4 of 5 symbols" in page

    closes_only = _result({"A_JPY": _bars("A_JPY", 60)})
    closes_only = replace(closes_only, bars={})
    page = render_report(closes_only, compute_metrics(closes_only))
    assert "A_JPY close" in page  # drawn as a line of closes
    assert "no volume panel" not in page


def test_the_cli_starts_without_bokeh() -> None:
    code = "import sys, trading_engine.app.cli.commands; sys.exit('bokeh' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
