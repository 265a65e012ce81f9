"""Benchmark (not a test): bars per second of `trading-engine backtest`'s engine on 200,000
one-minute bars with the 10/20 moving-average cross (close and reverse), next to
backtesting.py and backtrader running the same strategy on the same bars in the same run.
The number of trades must agree, or the comparison is void and the script says so.

No commission (on a random walk, thousands of round trips at 0.2 % would spend the account
to nothing, and then the engines differ only in how they refuse). The bars are a seeded
random walk (no file to ship). Our run uses the embedded default (a
SQLite event store and tables in a temporary folder) unless `--database memory://`.

  .venv/bin/python bench/backtest_speed.py --bars 200000
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd


def random_walk(bars: int, seed: int = 42) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 5_000_000 * np.exp(np.cumsum(rng.normal(0, 0.0008, bars)))
    close = np.round(close)
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 0.0004, bars)) * close
    high = np.round(np.maximum(open_, close) + spread)
    low = np.round(np.minimum(open_, close) - spread)
    index = pd.date_range("2026-01-01", periods=bars, freq="1min", tz="UTC")
    volume = np.round(rng.uniform(1e6, 5e6, bars))  # ample: fills are not volume-limited
    return pd.DataFrame(
        {"Open": open_, "High": high, "Low": low, "Close": close, "Volume": volume}, index=index
    )


def run_backtesting_py(frame: pd.DataFrame, fast: int, slow: int) -> tuple[float, int]:
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover
    from backtesting.test import SMA

    class SmaCross(Strategy):
        def init(self) -> None:
            self.ma1 = self.I(SMA, self.data.Close, fast)
            self.ma2 = self.I(SMA, self.data.Close, slow)

        def next(self) -> None:
            if crossover(self.ma1, self.ma2):
                self.position.close()
                self.buy()
            elif crossover(self.ma2, self.ma1):
                self.position.close()
                self.sell()

    data = frame.tz_localize(None)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = Backtest(data, SmaCross, cash=10**9, commission=0.0).run()
    return time.perf_counter() - started, int(stats["# Trades"])


def run_backtrader(frame: pd.DataFrame, fast: int, slow: int) -> tuple[float, int]:
    import backtrader as bt

    class SmaCross(bt.Strategy):
        def __init__(self) -> None:
            self.cross = bt.ind.CrossOver(bt.ind.SMA(period=fast), bt.ind.SMA(period=slow))

        def next(self) -> None:
            if self.cross > 0:
                self.order_target_size(target=1)
            elif self.cross < 0:
                self.order_target_size(target=-1)

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame.tz_localize(None)))
    cerebro.addstrategy(SmaCross)
    cerebro.broker.setcash(10**12)
    cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="trades")
    started = time.perf_counter()
    result = cerebro.run()[0]
    elapsed = time.perf_counter() - started
    closed = result.analyzers.trades.get_analysis().get("total", {}).get("closed", 0)
    return elapsed, int(closed)


def run_ours(frame: pd.DataFrame, fast: int, slow: int, database: str | None) -> tuple[float, int]:
    from app.bootstrap import BacktestOptions, bar_backtest, read_bar_files
    from app.config import load_settings

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "BTC.parquet"
        frame.to_parquet(path)
        bars = read_bar_files([path])
        settings = load_settings(
            DATABASE_URL=database or f"sqlite:///{folder}/events.sqlite3",
            STRATEGY_NAME="moving_average_cross",
            MAX_POSITION_SIZE=Decimal(10) ** 11,
            MAX_DRAWDOWN_PCT=Decimal(100),
            MAX_CONSECUTIVE_LOSSES=10**9,
        )
        options = BacktestOptions(
            cash=Decimal(10**9),
            strategy_overrides={"fast_window": fast, "slow_window": slow},
        )
        runner, close = bar_backtest(settings, bars, options)
        try:
            started = time.perf_counter()
            result = runner.run()
            elapsed = time.perf_counter() - started
        finally:
            close()
    return elapsed, len(result.trades)


def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # refusals are logged as warnings: not here
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=200_000)
    parser.add_argument("--fast", type=int, default=10)
    parser.add_argument("--slow", type=int, default=20)
    parser.add_argument("--database", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()
    frame = random_walk(args.bars)
    results = {
        "backtesting.py": run_backtesting_py(frame, args.fast, args.slow),
        "backtrader": run_backtrader(frame, args.fast, args.slow),
        "trading-engine": run_ours(frame, args.fast, args.slow, args.database),
    }
    print(f"{args.bars:,} one-minute bars, SMA {args.fast}/{args.slow} cross, close and reverse")
    for name, (seconds, trades) in results.items():
        print(
            f"{name:>15}: {seconds:8.1f} s  {args.bars / seconds:>10,.0f} bars/s  {trades} trades"
        )
    ours = results["trading-engine"]
    for name in ("backtesting.py", "backtrader"):
        seconds, trades = results[name]
        agree = "trades agree" if trades == ours[1] else f"TRADES DIFFER ({trades} vs {ours[1]})"
        print(f"ratio trading-engine / {name}: {seconds / ours[0]:.3f} ({agree})")


if __name__ == "__main__":
    main()
