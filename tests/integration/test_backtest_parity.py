"""Parity with backtesting.py, run here on the data sets it ships (GOOG daily, EURUSD hourly
with `Volume` in ticks, BTCUSD monthly): its fill rule (market orders at the next bar's
open), its default sizing (whole units from all available equity, commission included in
the price), no cap on fills by volume, and the same strategy rules give the same trades, the
same position left open at the end and the same final equity in our backtest.

The bar files are what a user has: `DataFrame.to_csv()` output under ordinary file names,
read with the timeframe inferred from the spacing (1d with weekend gaps, 1h, calendar 1M).
The strategies on backtesting.py's side are written here from our strategies' rules: the
10/20 (3/8 on BTCUSD) moving-average cross that closes and reverses, RSI zone entries and
Bollinger band touches, each closing and reversing (shorting is on, as in the CLI)."""

from __future__ import annotations

import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

backtesting = pytest.importorskip("backtesting", reason="parity needs backtesting.py installed")
talib = pytest.importorskip("talib", reason="parity of RSI/Bollinger uses TA-Lib's indicators")
from backtesting import Backtest, Strategy  # noqa: E402
from backtesting.lib import FractionalBacktest, crossover  # noqa: E402
from backtesting.test import BTCUSD, EURUSD, GOOG, SMA  # noqa: E402

from support.backtests import run_bar_files  # noqa: E402
from trading_engine.app.backtest.results import compute_metrics  # noqa: E402
from trading_engine.app.bootstrap.backtests import synthetic_bar_set  # noqa: E402

DATA = {"GOOG": GOOG, "EURUSD": EURUSD, "BTCUSD": BTCUSD}
CASH, COMMISSION = 10_000, 0.002


class SmaCross(Strategy):
    fast, slow = 10, 20

    def init(self) -> None:
        self.ma1 = self.I(SMA, self.data.Close, self.fast)
        self.ma2 = self.I(SMA, self.data.Close, self.slow)

    def next(self) -> None:
        if crossover(self.ma1, self.ma2):
            self.position.close()
            self.buy()
        elif crossover(self.ma2, self.ma1):
            self.position.close()
            self.sell()


class _Reverse(Strategy):
    """Enter long/short on the first bar of a zone; a signal in the position's own direction
    changes nothing (as our sizing: enter_long while long is a no-op).

    The indicators are computed whole in `init` and read by bar number, not declared with
    `self.I`: backtesting.py starts calling `next` one bar after its indicators' warm-up, and
    our strategies decide on the first bar that has a value."""

    def zones(self) -> list[str | None]:  # pragma: no cover - overridden
        raise NotImplementedError

    def init(self) -> None:
        self.zone_of = self.zones()
        self.previous: str | None = None

    def next(self) -> None:
        zone = self.zone_of[len(self.data) - 1]
        if zone == "skip":  # the strategy made no decision: its memory stays as it was
            return
        previous, self.previous = self.previous, zone
        if zone is None or zone == previous:
            return
        if zone == "long" and not self.position.is_long:
            self.position.close()
            self.buy()
        elif zone == "short" and not self.position.is_short:
            self.position.close()
            self.sell()


class RsiZones(_Reverse):
    period, oversold, overbought = 14, 30.0, 70.0

    def zones(self) -> list[str | None]:
        rsi = talib.RSI(self.data.Close.astype(float), self.period)
        return [
            "skip"
            if np.isnan(value)
            else "long"
            if value <= self.oversold
            else "short"
            if value >= self.overbought
            else None
            for value in rsi
        ]


class BollingerTouches(_Reverse):
    period, std_dev = 20, 2.0

    def zones(self) -> list[str | None]:
        close = self.data.Close.astype(float)
        upper, _, lower = talib.BBANDS(close, self.period, self.std_dev, self.std_dev, 0)
        return [
            "skip"
            if np.isnan(up) or np.isnan(low) or up == low
            else "long"
            if price <= low
            else "short"
            if price >= up
            else None
            for up, low, price in zip(upper, lower, close, strict=True)
        ]


def _reference(data: pd.DataFrame, strategy: type[Strategy], **params: Any) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "some trades remain open": so do ours
        return Backtest(data, strategy, cash=CASH, commission=COMMISSION).run(**params)


def _ours(csv: Path, strategy: str, overrides: dict[str, Any], database_url: str = "memory://"):
    warned: list[str] = []
    result = run_bar_files(
        [csv], strategy, overrides, cash=CASH, database_url=database_url, warn=warned.append
    )
    if csv.name == "btcusd.csv":  # two volumes carry float noise past 8 decimals
        assert warned == [
            f"{csv}: 2 values had more than 8 decimal places and were rounded to 8 "
            "(first: data row 43, column volume)"
        ]
    else:
        assert warned == []
    return result


def _assert_same_run(result: Any, reference: pd.Series, minimum_trades: int) -> None:
    theirs = reference._trades
    assert len(theirs) >= minimum_trades  # a real comparison, not a quiet one
    ours = [
        (t.entry_bar, t.exit_bar, t.side, t.size, float(t.entry_price), float(t.exit_price))
        for t in result.trades
    ]
    expected = [
        (
            int(row.EntryBar),
            int(row.ExitBar),
            "LONG" if row.Size > 0 else "SHORT",
            Decimal(abs(int(row.Size))),
            float(row.EntryPrice),
            float(row.ExitPrice),
        )
        for row in theirs.itertuples()
    ]
    assert ours == expected
    for mine, row in zip(result.trades, theirs.itertuples(), strict=True):
        assert float(mine.pnl) == pytest.approx(float(row.PnL), rel=1e-9, abs=1e-6)
    # the position still open at the end: the same entry, in the equity, not in the stats
    still_open = reference._strategy.trades
    assert [(t.entry_bar, t.side, t.size, float(t.entry_price)) for t in result.open_trades] == [
        (t.entry_bar, "LONG" if t.size > 0 else "SHORT", Decimal(abs(t.size)), t.entry_price)
        for t in still_open
    ]
    final = float(result.equity[-1].equity)
    assert final == pytest.approx(float(reference["Equity Final [$]"]), rel=1e-4)  # 0.01 %
    metrics = compute_metrics(result)
    assert metrics["trades"] == reference["# Trades"]
    assert metrics["open_trades"] == len(still_open)
    assert metrics["open_trades_counted"] is False
    assert metrics["exposure_time_pct"] == pytest.approx(reference["Exposure Time [%]"])
    assert metrics["fees_paid"] == pytest.approx(reference["Commissions [$]"], rel=1e-9)
    assert metrics["win_rate_pct"] == pytest.approx(reference["Win Rate [%]"])
    assert metrics["max_drawdown_pct"] == pytest.approx(reference["Max. Drawdown [%]"], rel=1e-4)


@pytest.fixture(scope="module")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """backtesting.py's data as a user saves it: `to_csv`, lower-case file names."""
    folder = tmp_path_factory.mktemp("data")
    paths = {}
    for name, frame in DATA.items():
        paths[name] = folder / f"{name.lower()}.csv"
        frame.to_csv(paths[name])
    return paths


@pytest.mark.parametrize(
    ("name", "fast", "slow", "minimum"),
    [("GOOG", 10, 20, 50), ("EURUSD", 10, 20, 200), ("BTCUSD", 3, 8, 10)],
)
def test_sma_cross_trade_for_trade(
    data_files: dict[str, Path], name: str, fast: int, slow: int, minimum: int
) -> None:
    reference = _reference(DATA[name], SmaCross, fast=fast, slow=slow)
    result = _ours(
        data_files[name], "moving_average_cross", {"fast_window": fast, "slow_window": slow}
    )
    _assert_same_run(result, reference, minimum)


@pytest.mark.parametrize(
    ("name", "period", "oversold", "overbought"),
    [("GOOG", 7, 35.0, 65.0), ("EURUSD", 14, 30.0, 70.0)],  # GOOG at 14/30/70: one trade
)
def test_rsi_zones_trade_for_trade(
    data_files: dict[str, Path], name: str, period: int, oversold: float, overbought: float
) -> None:
    rules = {"period": period, "oversold": oversold, "overbought": overbought}
    reference = _reference(DATA[name], RsiZones, **rules)
    result = _ours(data_files[name], "rsi", rules)
    _assert_same_run(result, reference, 10)


def test_out_of_money_closes_everything_and_stops(data_files: dict[str, Path]) -> None:
    """RSI 14/30/70 shorts GOOG in 2004 and holds the short through its rally: equity
    reaches zero, and both engines close the position at that bar's close and stop."""
    rules = {"period": 14, "oversold": 30.0, "overbought": 70.0}
    reference = _reference(GOOG, RsiZones, **rules)
    assert reference["Equity Final [$]"] == 0
    result = _ours(data_files["GOOG"], "rsi", rules)
    _assert_same_run(result, reference, 1)
    stopped = result.trades[-1].exit_bar
    assert result.parameters["out_of_money_at"] == GOOG.index[stopped].isoformat() + "+00:00"
    assert all(point.equity == 0 for point in result.equity[stopped:])
    assert len(result.equity) == len(GOOG)


@pytest.mark.parametrize("name", ["GOOG", "EURUSD"])
def test_bollinger_touches_trade_for_trade(data_files: dict[str, Path], name: str) -> None:
    reference = _reference(DATA[name], BollingerTouches)
    result = _ours(data_files[name], "bollinger_bands", {"period": 20, "std_dev": 2.0})
    _assert_same_run(result, reference, 5)


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_same_trades_whatever_the_store(
    data_files: dict[str, Path], tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path}/events.sqlite3"
        if database == "sqlite"
        else f"{request.getfixturevalue('pg_url')}?schema={request.getfixturevalue('pg_schema')}"
    )
    reference = _reference(GOOG, SmaCross)
    result = _ours(
        data_files["GOOG"], "moving_average_cross", {"fast_window": 10, "slow_window": 20}, url
    )
    _assert_same_run(result, reference, 50)


def test_several_symbols_in_one_run_share_the_cash(tmp_path: Path) -> None:
    """Two symbols, one account: each entry sizes from what the other position leaves."""
    GOOG.to_csv(tmp_path / "GOOG.csv")
    (GOOG[["Open", "High", "Low", "Close", "Volume"]] * [2, 2, 2, 2, 1]).to_csv(
        tmp_path / "GOOG2.csv"
    )
    result = run_bar_files(
        [tmp_path / "GOOG.csv", tmp_path / "GOOG2.csv"],
        "moving_average_cross",
        {"fast_window": 10, "slow_window": 20},
        cash=100_000,
        fraction="0.5",
    )
    by_symbol = {s: [t for t in result.trades if t.symbol == s] for s in ("GOOG", "GOOG2")}
    # the same crosses on both (prices doubled), so the same number of round trips
    assert len(by_symbol["GOOG"]) == len(by_symbol["GOOG2"]) > 50
    # at the first entry, both open on the same bar with half the cash each (GOOG2's price is
    # twice GOOG's, so about half the units), and never more than the account holds
    first, second = by_symbol["GOOG"][0], by_symbol["GOOG2"][0]
    assert first.entry_bar == second.entry_bar
    spent = first.size * first.entry_price + second.size * second.entry_price
    assert spent <= Decimal(100_000)
    assert abs(first.size - 2 * second.size) <= 1
    assert len(result.equity) == len(GOOG)


def test_the_main_jobs_year_of_hourly_bars(tmp_path: Path) -> None:
    """ops/main.sh's run (generated BTC_JPY hourly bars, cash 1,000,000, commission 0.001,
    size steps of 0.001 BTC) against backtesting.py's FractionalBacktest in 0.001 units."""
    bars = synthetic_bar_set(8760, 1, timeframe="1h")["BTC_JPY"]
    frame = pd.DataFrame(
        {
            name.capitalize(): [float(getattr(bar, name)) for bar in bars]
            for name in ("open", "high", "low", "close", "volume")
        },
        index=pd.DatetimeIndex([bar.timestamp for bar in bars]).tz_localize(None),
    )
    frame.to_csv(tmp_path / "BTC_JPY.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = FractionalBacktest(
            frame, SmaCross, cash=1_000_000, commission=0.001, fractional_unit=0.001
        ).run()
    result = run_bar_files(
        [tmp_path / "BTC_JPY.csv"],
        "moving_average_cross",
        {"fast_window": 10, "slow_window": 20},
        cash=1_000_000,
        commission="0.001",
    )
    theirs = reference._trades
    assert len(result.trades) == len(theirs) > 400
    assert [(t.entry_bar, t.exit_bar, t.side) for t in result.trades] == [
        (int(r.EntryBar), int(r.ExitBar), "LONG" if r.Size > 0 else "SHORT")
        for r in theirs.itertuples()
    ]
    assert [float(t.size) for t in result.trades] == pytest.approx(
        [abs(float(r.Size)) for r in theirs.itertuples()]
    )
    final = float(result.equity[-1].equity)
    assert final == pytest.approx(float(reference["Equity Final [$]"]), rel=1e-4)
