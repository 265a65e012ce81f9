"""Benchmark (not a test): `trading-engine backtest` as a user runs it, next to backtesting.py
and backtrader running the same strategy on the same CSV file, each as a whole process
(start-up, imports, reading the file, the run, writing its results), in the same run.

The strategy: the 10/20 moving-average cross, closing and reversing on each cross, all-in
sizing, no commission (on a random walk, thousands of round trips at 0.2 % would spend the
account to nothing, and then the engines differ only in how they refuse). The bars are a
seeded random walk of one-minute bars written to one CSV file that all three read. The
number of trades must agree, or the comparison is void and the script says so.

For each engine: wall time, CPU time and peak memory (RSS) of its process, bars per second
of wall time, and the ratios against backtesting.py. Ours writes metrics.json, trades.csv,
equity.csv and its event log (SQLite, hash-chained) but not report.html (`--no-report`), as
backtesting.py is timed without `plot()`; `--report` times both with their HTML report.

  .venv/bin/python bench/backtest_speed.py --bars 200000
  .venv/bin/python bench/backtest_speed.py --scaling 10000,100000,1000000 --only trading-engine
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ENGINE = Path(sys.executable).with_name("trading-engine")


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


BACKTESTING_PY = """
import sys, warnings
import pandas as pd
from backtesting import Backtest, Strategy
from backtesting.lib import crossover
from backtesting.test import SMA

path, fast, slow, report = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

class SmaCross(Strategy):
    def init(self):
        self.ma1 = self.I(SMA, self.data.Close, fast)
        self.ma2 = self.I(SMA, self.data.Close, slow)

    def next(self):
        if crossover(self.ma1, self.ma2):
            self.position.close()
            self.buy()
        elif crossover(self.ma2, self.ma1):
            self.position.close()
            self.sell()

data = pd.read_csv(path, index_col=0, parse_dates=True).tz_localize(None)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    bt = Backtest(data, SmaCross, cash=10**9, commission=0.0)
    stats = bt.run()
    stats._trades.to_csv(path + ".bt_trades.csv")
    if report != "-":
        bt.plot(filename=report, open_browser=False)
print(int(stats["# Trades"]))
"""

BACKTRADER = """
import sys
import pandas as pd
import backtrader as bt

path, fast, slow = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

class SmaCross(bt.Strategy):
    def __init__(self):
        self.cross = bt.ind.CrossOver(bt.ind.SMA(period=fast), bt.ind.SMA(period=slow))

    def next(self):
        if self.cross > 0:
            self.order_target_size(target=1)
        elif self.cross < 0:
            self.order_target_size(target=-1)

data = pd.read_csv(path, index_col=0, parse_dates=True).tz_localize(None)
cerebro = bt.Cerebro(stdstats=False)
cerebro.adddata(bt.feeds.PandasData(dataname=data))
cerebro.addstrategy(SmaCross)
cerebro.broker.setcash(10**12)
cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="trades")
result = cerebro.run()[0]
print(int(result.analyzers.trades.get_analysis().get("total", {}).get("closed", 0)))
"""


@dataclass(frozen=True)
class Run:
    engine: str
    wall: float
    cpu: float
    peak_mb: float
    trades: int


def timed(engine: str, argv: list[str], trades_of: callable) -> Run:  # type: ignore[valid-type]
    """One whole process: wall time around it, its CPU time and peak RSS from wait4."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    out = process.stdout.read().decode() if process.stdout else ""
    err = process.stderr.read().decode() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{engine} failed ({status}):\n{out[-2000:]}\n{err[-4000:]}")
    return Run(
        engine,
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,  # KiB on Linux
        trades_of(out),
    )


def run_backtesting_py(csv: Path, fast: int, slow: int, report: Path | None) -> Run:
    argv = [sys.executable, "-c", BACKTESTING_PY, str(csv), str(fast), str(slow)]
    argv.append(str(report) if report else "-")
    return timed("backtesting.py", argv, lambda out: int(out.split()[-1]))


def run_backtrader(csv: Path, fast: int, slow: int) -> Run:
    argv = [sys.executable, "-c", BACKTRADER, str(csv), str(fast), str(slow)]
    return timed("backtrader", argv, lambda out: int(out.split()[-1]))


def run_ours(csv: Path, fast: int, slow: int, out: Path, report: bool) -> Run:
    argv = [
        str(ENGINE),
        "backtest",
        "--data",
        str(csv),
        "--param",
        f"fast_window={fast}",
        "--param",
        f"slow_window={slow}",
        "--cash",
        str(10**9),
        "--out",
        str(out),
        "--overwrite",
        "--report" if report else "--no-report",
    ]
    return timed(
        "trading-engine",
        argv,
        lambda _: json.loads((out / "metrics.json").read_text())["trades"],
    )


def compare(bars: int, engines: list[str], fast: int, slow: int, report: bool) -> list[Run]:
    with tempfile.TemporaryDirectory() as folder:
        csv = Path(folder) / "BTC_JPY.csv"
        random_walk(bars).to_csv(csv)
        runs = []
        for engine in engines:
            if engine == "backtesting.py":
                html = Path(folder) / "bt.html" if report else None
                runs.append(run_backtesting_py(csv, fast, slow, html))
            elif engine == "backtrader":
                runs.append(run_backtrader(csv, fast, slow))
            else:
                runs.append(run_ours(csv, fast, slow, Path(folder) / "run", report))
    return runs


def print_runs(bars: int, runs: list[Run]) -> None:
    print(f"\n{bars:,} one-minute bars, whole processes (start-up, CSV, run, results)")
    for r in runs:
        print(
            f"{r.engine:>15}: wall {r.wall:7.2f} s  cpu {r.cpu:7.2f} s  peak {r.peak_mb:7.0f} MB"
            f"  {bars / r.wall:>9,.0f} bars/s  {r.trades} trades"
        )
    ours = next((r for r in runs if r.engine == "trading-engine"), None)
    if ours is None:
        return
    for other in runs:
        if other is ours:
            continue
        agree = "trades agree" if other.trades == ours.trades else "TRADES DIFFER"
        print(
            f"trading-engine vs {other.engine}: speed {other.wall / ours.wall:.3f} "
            f"(its wall / ours; >= 1 is as fast), memory {ours.peak_mb / other.peak_mb:.2f}x "
            f"({agree}: {other.trades} vs {ours.trades})"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=200_000)
    parser.add_argument("--fast", type=int, default=10)
    parser.add_argument("--slow", type=int, default=20)
    parser.add_argument(
        "--only",
        default="backtesting.py,backtrader,trading-engine",
        help="engines, comma-separated",
    )
    parser.add_argument("--report", action="store_true", help="time the HTML reports too")
    parser.add_argument(
        "--scaling",
        default=None,
        help="bar counts, e.g. 10000,100000,1000000: bars/s at each (per-bar cost flat?)",
    )
    args = parser.parse_args()
    engines = args.only.split(",")
    sizes = [int(n) for n in args.scaling.split(",")] if args.scaling else [args.bars]
    per_bar: dict[str, list[tuple[int, float]]] = {}
    for bars in sizes:
        runs = compare(bars, engines, args.fast, args.slow, args.report)
        print_runs(bars, runs)
        for r in runs:
            per_bar.setdefault(r.engine, []).append((bars, r.cpu / bars * 1e6))
    if len(sizes) > 1:
        print("\nCPU microseconds per bar (whole process) by run length:")
        for engine, points in per_bar.items():
            cells = "  ".join(f"{bars:>9,}: {us:6.1f}" for bars, us in points)
            print(f"{engine:>15}: {cells}  (last/first {points[-1][1] / points[0][1]:.2f})")


if __name__ == "__main__":
    main()
