"""`trading-engine walk-forward` on data we did not make (backtesting.py's daily GOOG,
2004-08-19 to 2013-03-01): each window's choice is the best training point, each test window
is the same run as a plain run of that point, and as backtesting.py's run of the same rules
trading from the test window's start; the stitched curve compounds them. Also: `trade_from`
only warms the strategy up, and bad input stops before any work."""

from __future__ import annotations

import csv
import json
import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from support.cli import CliResult
from support.cli import run_cli as cli
from trading_engine.app.bootstrap.sweep import SweepJob, run_point

backtesting = pytest.importorskip("backtesting", reason="the cross-check runs backtesting.py")
from backtesting import Backtest, Strategy  # noqa: E402
from backtesting.lib import crossover  # noqa: E402
from backtesting.test import GOOG, SMA  # noqa: E402

CASH, COMMISSION = 10_000, "0.002"
GRID = ("--grid", "fast_window=5,10", "--grid", "slow_window=20,40")


def run_cli(cwd: Path, *args: str) -> CliResult:
    return cli(*args, cwd=cwd, env={"DATABASE_URL": None})


@pytest.fixture
def goog(tmp_path: Path) -> Path:
    """backtesting.py's GOOG as a user saves it (`to_csv`)."""
    path = tmp_path / "GOOG.csv"
    GOOG.to_csv(path)
    return path


def _job(goog: Path, point: dict[str, Any], **window: str | None) -> SweepJob:
    return SweepJob(
        number=1,
        point=point,
        strategy="moving_average_cross",
        data=(str(goog),),
        cash=str(CASH),
        commission=COMMISSION,
        **window,
    )


def _theirs(point: dict[str, Any], start: str, trade_from: str, end: str) -> float:
    """backtesting.py's final equity: the 10/20-style cross that closes and reverses, on
    the bars of [start, end), deciding only from `trade_from` on."""
    first, begin, stop = (pd.Timestamp(t).tz_localize(None) for t in (start, trade_from, end))

    class Cross(Strategy):
        fast, slow = point["fast_window"], point["slow_window"]

        def init(self) -> None:
            self.ma1 = self.I(SMA, self.data.Close, self.fast)
            self.ma2 = self.I(SMA, self.data.Close, self.slow)

        def next(self) -> None:
            if self.data.index[-1] < begin:
                return  # warming up: no decision acted on
            if crossover(self.ma1, self.ma2):
                self.position.close()
                self.buy()
            elif crossover(self.ma2, self.ma1):
                self.position.close()
                self.sell()

    data = GOOG[(GOOG.index >= first) & (GOOG.index < stop)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = Backtest(data, Cross, cash=CASH, commission=float(COMMISSION)).run()
    return float(stats["Equity Final [$]"])


def test_walk_forward_on_goog(tmp_path: Path, goog: Path) -> None:
    result = run_cli(
        tmp_path,
        "walk-forward",
        "--data",
        str(goog),
        *GRID,
        "--train",
        "730d",
        "--test",
        "365d",
        "--cash",
        str(CASH),
        "--commission",
        COMMISSION,
        "--workers",
        "2",
        "--out",
        "out",
    )
    assert result.returncode == 0, result.stderr
    assert "24/24" in result.stderr
    assert "6/6" in result.stderr
    assert "out of sample (stitched, 6 windows)" in result.stdout
    out = tmp_path / "out"
    with (out / "walk_forward.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    document = json.loads((out / "walk_forward.json").read_text())
    windows = document["windows"]
    assert len(rows) == len(windows) == 6
    assert list(rows[0])[:7] == [
        "window",
        "train_start",
        "train_end",
        "test_start",
        "test_end",
        "fast_window",
        "slow_window",
    ]
    assert rows[0]["train_start"] == "2004-08-19T00:00:00+00:00"
    assert rows[0]["test_start"] == "2006-08-19T00:00:00+00:00"  # 730 days on
    assert rows[-1]["test_end"] == "2012-08-17T00:00:00+00:00"
    # the last 196 days (to 2013-03-02) are less than a test window: not tested, and said
    assert document["untested"]["days"] == pytest.approx(197.0)
    assert all(row["error"] == "" and row["failed_points"] == "0" for row in rows)

    stitched = 1.0
    for row, window in zip(rows, windows, strict=True):
        # the choice: the training point with the highest Sharpe ratio
        training = window["training"]
        assert len(training) == 4
        best = max(training, key=lambda r: r["sharpe_ratio"])
        assert window["parameters"] == best["parameters"]
        assert float(row["in_sample_sharpe_ratio"]) == best["sharpe_ratio"]
        assert {k: int(row[k]) for k in ("fast_window", "slow_window")} == best["parameters"]
        # the test window, by backtesting.py: the same rules warmed up on the training bars
        theirs = _theirs(
            window["parameters"], window["train_start"], window["test_start"], window["test_end"]
        )
        assert window["out_of_sample"]["final_equity"] == pytest.approx(theirs, rel=1e-12)
        stitched *= theirs / CASH
    summary = document["summary"]
    metrics = document["out_of_sample"]["metrics"]
    # the stitched curve compounds the windows
    assert metrics["final_equity"] == pytest.approx(CASH * stitched, rel=1e-12)
    assert metrics["return_pct"] == pytest.approx((stitched - 1) * 100, rel=1e-12)
    assert metrics["start"] == windows[0]["out_of_sample"]["start"]
    assert metrics["end"] == windows[-1]["out_of_sample"]["end"]
    assert document["out_of_sample"]["equity"][0][1] == CASH
    assert summary["out_of_sample_metric_stitched"] == metrics["sharpe_ratio"]
    assert summary["efficiency"] == pytest.approx(
        summary["out_of_sample_return_ann_pct"] / summary["in_sample_return_ann_pct"]
    )
    assert (summary["warning"] is None) == (summary["efficiency"] >= 0.5)

    # one window again, on its own: the same figures to the last digit
    third = windows[2]
    alone = run_point(
        _job(
            goog,
            third["parameters"],
            start=third["train_start"],
            trade_from=third["test_start"],
            end=third["test_end"],
        )
    )
    assert {k: v for k, v in alone.items() if k != "parameters"} == third["out_of_sample"]
    trained = run_point(
        _job(goog, third["parameters"], start=third["train_start"], end=third["train_end"])
    )
    assert {k: v for k, v in trained.items() if k != "parameters"} == third["in_sample"]

    page = (out / "report.html").read_text()
    assert "<svg" in page
    assert "<polyline" in page
    assert page.count("<tr><td class=num>") >= 6
    assert "<script" not in page


def test_trade_from_only_warms_the_strategy_up(goog: Path) -> None:
    """Bars before `trade_from` feed the indicators; their signals are dropped, no order
    is placed and no equity marked before it."""
    point = {"fast_window": 10, "slow_window": 20}
    whole = run_point(replace(_job(goog, point), detail=True))
    entries = [t["entry_time"] for t in whole["detail"]["closed_trades"]]
    # a start 5 bars before the 11th entry of an undivided run: the 10th entry (and the
    # cross before it) happened in the warm-up
    index = [t.isoformat() + "+00:00" for t in GOOG.index]
    entry = index.index(entries[10])
    trade_from = index[entry - 5]
    warmed = run_point(replace(_job(goog, point, trade_from=trade_from), detail=True))
    assert "error" not in warmed, warmed
    equity = warmed["detail"]["equity"]
    assert equity[0][0] == trade_from
    assert len(equity) == len(index) - (entry - 5)
    assert equity[0][1:] == [str(CASH), False]  # in cash: the warm-up's position was never taken
    times = [t["entry_time"] for t in warmed["detail"]["closed_trades"]]
    times += [t["entry_time"] for t in warmed["detail"]["open_trades"]]
    assert min(times) >= trade_from
    # warmed up, it trades on the 5th bar; a cold start there needs 21 bars first
    assert min(times) == entries[10]
    # figures over the traded span only: buy & hold from trade_from's close, the exposure
    # counted on the bars from trade_from (the warm-up's bars once made it 0 %)
    closes = [float(c) for c in GOOG["Close"]]
    held = (closes[-1] / closes[entry - 5] - 1) * 100
    assert warmed["buy_and_hold_return_pct"] == pytest.approx(held, rel=1e-12)
    assert warmed["exposure_time_pct"] > 50
    cold = run_point(replace(_job(goog, point, start=trade_from), detail=True))
    cold_times = [t["entry_time"] for t in cold["detail"]["closed_trades"]]
    assert index.index(min(cold_times)) - (entry - 5) >= 21
    # and the whole run's later trades are the warmed run's: same prices, same times
    later = [
        (t["entry_time"], t["exit_time"], t["side"]) for t in whole["detail"]["closed_trades"][10:]
    ]
    assert [
        (t["entry_time"], t["exit_time"], t["side"]) for t in warmed["detail"]["closed_trades"]
    ] == later


def test_failing_points_are_reported_the_others_run_and_the_exit_code_says_so(
    tmp_path: Path, goog: Path
) -> None:
    result = run_cli(
        tmp_path,
        "walk-forward",
        "--data",
        str(goog),
        "--grid",
        "fast_window=10,40",  # 40 is not below slow_window 20 or 40: those points fail
        "--grid",
        "slow_window=20:40:20",  # a range: 20 and 40
        "--train",
        "730d",
        "--test",
        "365d",
        "--anchored",
        "--sort",
        "return_pct",
        "--workers",
        "1",
        "--out",
        "out",
    )
    assert result.returncode == 1, result.stderr
    said = " ".join(result.stderr.split())
    assert "12 of 30 points failed; 0 of 6 windows not tested" in said
    assert "fast_window=40 slow_window=20: " in said
    assert "below slow_window" in said
    with (tmp_path / "out" / "walk_forward.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    assert {row["train_start"] for row in rows} == {"2004-08-19T00:00:00+00:00"}  # anchored
    assert all(row["fast_window"] == "10" and row["failed_points"] == "2" for row in rows)
    assert all(row["out_of_sample_return_pct"] != "" for row in rows)
    document = json.loads((tmp_path / "out" / "walk_forward.json").read_text())
    assert document["anchored"] is True
    assert document["summary"]["failed_points"] == 12
    assert not math.isnan(document["out_of_sample"]["metrics"]["return_pct"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--train", "90x", "--test", "30d"), "--train: expected a length such as 90d"),
        (("--train", "365d", "--test", "0d"), "--test: expected a length"),
        (("--train", "3000d", "--test", "365d"), "no test window fits: the data span 3117.0 days"),
        (("--train", "40d", "--test", "30d"), "holds 24 bars, and moving_average_cross with"),
        (("--train", "20d", "--test", "10d"), "--sort sharpe_ratio is annualised"),
        (("--train", "365d"), "give --train and --test"),
        (("--train", "365d", "--test", "90d", "--sort", "nope"), "unknown metric 'nope'"),
        (("--train", "365d", "--test", "90d", "--strategy", "nope"), "unknown strategy 'nope'"),
    ],
)
def test_bad_input_stops_before_any_work(
    tmp_path: Path, goog: Path, args: tuple[str, ...], message: str
) -> None:
    grid = GRID
    if "40d" in args:  # slow_window 40 needs 41 bars; 40 days of GOOG hold 25 to 29
        grid = (*GRID, "--sort", "return_pct")
    result = run_cli(tmp_path, "walk-forward", "--data", str(goog), *grid, *args, "--out", "o")
    assert result.returncode == 2, result.stdout
    assert message in " ".join(result.stderr.split())  # (the console wraps at 80 columns)
    assert not (tmp_path / "o").exists()


def test_an_empty_grid_or_a_grid_of_only_bad_points_is_a_usage_error(
    tmp_path: Path, goog: Path
) -> None:
    common = ("walk-forward", "--data", str(goog), "--train", "365d", "--test", "90d")
    empty = run_cli(tmp_path, *common, "--out", "o")
    assert empty.returncode == 2
    assert "give at least one --grid" in empty.stderr
    blank = run_cli(tmp_path, *common, "--grid", "fast_window=", "--out", "o")
    assert blank.returncode == 2
    assert "--grid expects NAME=V1,V2,..." in blank.stderr
    hopeless = run_cli(tmp_path, *common, "--grid", "fast_window=30,40", "--out", "o")
    assert hopeless.returncode == 2
    assert "no point of the grid can run (2 invalid)" in " ".join(hopeless.stderr.split())
    assert not (tmp_path / "o").exists()
