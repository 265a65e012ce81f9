"""Parity with backtesting.py (run here, on the GOOG data it ships): its fill rule (market
orders at the next bar's open), its default sizing (whole units from all available equity,
commission included in the price) and the 10/20 moving-average cross that closes and
reverses on each cross give the same trades and the same final equity in our backtest."""

from __future__ import annotations

import warnings
from decimal import Decimal
from pathlib import Path

import pytest

backtesting = pytest.importorskip("backtesting", reason="parity needs backtesting.py installed")
from backtesting import Backtest, Strategy  # noqa: E402
from backtesting.lib import crossover  # noqa: E402
from backtesting.test import GOOG, SMA  # noqa: E402

from app.bootstrap import BacktestOptions, bar_backtest, read_bar_files  # noqa: E402
from app.config import load_settings  # noqa: E402


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


@pytest.mark.parametrize("database", ["memory", "sqlite", "postgres"])
def test_same_trades_and_final_equity_as_backtesting_py(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "some trades remain open": so do ours
        reference = Backtest(GOOG, SmaCross, cash=10_000, commission=0.002).run()
    theirs = reference._trades
    assert len(theirs) > 50  # a real comparison, not a quiet one

    GOOG.to_csv(tmp_path / "GOOG.csv")
    bars = read_bar_files([tmp_path / "GOOG.csv"])
    url = {
        "memory": lambda: "memory://",
        "sqlite": lambda: f"sqlite:///{tmp_path}/events.sqlite3",
        "postgres": lambda: (
            f"{request.getfixturevalue('pg_url')}?schema={request.getfixturevalue('pg_schema')}"
        ),
    }[database]()
    settings = load_settings(
        DATABASE_URL=url,
        STRATEGY_NAME="moving_average_cross",
        MAX_POSITION_SIZE=Decimal(10) ** 11,
        MAX_DRAWDOWN_PCT=Decimal(100),
        MAX_CONSECUTIVE_LOSSES=10**6,
    )
    options = BacktestOptions(
        cash=Decimal(10_000),
        commission=Decimal("0.002"),
        strategy_overrides={"fast_window": 10, "slow_window": 20},
    )
    runner, close = bar_backtest(settings, bars, options)
    try:
        result = runner.run()
    finally:
        close()

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
    final = float(result.equity[-1].equity)
    assert final == pytest.approx(float(reference["Equity Final [$]"]), rel=1e-4)  # 0.01 %


def test_several_symbols_in_one_run_share_the_cash(tmp_path: Path) -> None:
    """Two symbols, one account: each entry sizes from what the other position leaves."""
    GOOG.to_csv(tmp_path / "GOOG.csv")
    (GOOG[["Open", "High", "Low", "Close", "Volume"]] * [2, 2, 2, 2, 1]).to_csv(
        tmp_path / "GOOG2.csv"
    )
    bars = read_bar_files([tmp_path / "GOOG.csv", tmp_path / "GOOG2.csv"])
    settings = load_settings(
        DATABASE_URL="memory://",
        STRATEGY_NAME="moving_average_cross",
        MAX_POSITION_SIZE=Decimal(10) ** 11,
        MAX_DRAWDOWN_PCT=Decimal(100),
        MAX_CONSECUTIVE_LOSSES=10**6,
    )
    options = BacktestOptions(
        cash=Decimal(100_000),
        commission=Decimal("0.002"),
        fraction=Decimal("0.5"),
        strategy_overrides={"fast_window": 10, "slow_window": 20},
    )
    runner, close = bar_backtest(settings, bars, options)
    try:
        result = runner.run()
    finally:
        close()
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
