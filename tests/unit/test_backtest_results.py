"""Backtest metrics (checked by hand and against backtesting.py 0.6.6) and the output files."""

from __future__ import annotations

import csv
import io
import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from trading_engine.app.backtest import report as backtest_report
from trading_engine.app.backtest.report import write_outputs
from trading_engine.app.backtest.results import (
    BacktestResult,
    ClosedTrade,
    EquityPoint,
    compute_metrics,
)
from trading_engine.domain.models import OHLCV
from trading_engine.domain.values import Exchange, Symbol, Timeframe

# backtesting.py 0.6.6 itself calls the deprecated DatetimeIndex.dayofweek
pytestmark = pytest.mark.filterwarnings("ignore:DatetimeIndex.dayofweek is deprecated")

START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday; daily bars include weekends


# --------------------------------------------------------------------------- a hand-made run


def _closes() -> list[Decimal]:
    """60 daily closes: 100 until bar 5, +1/bar to 110 at bar 15, flat to bar 20, +1/bar to
    120 at bar 30, -2/bar to 100 at bar 40, +0.5/bar to 105 at bar 50, flat to bar 59."""
    closes = []
    for i in range(60):
        if i <= 5:
            p = Decimal(100)
        elif i <= 15:
            p = Decimal(100 + (i - 5))
        elif i <= 20:
            p = Decimal(110)
        elif i <= 30:
            p = Decimal(110 + (i - 20))
        elif i <= 40:
            p = Decimal(120 - 2 * (i - 30))
        elif i <= 50:
            p = Decimal(100) + Decimal("0.5") * (i - 40)
        else:
            p = Decimal(105)
        closes.append(p)
    return closes


# (side, size, entry bar, exit bar, fee per leg) — fills at the bar's close
HAND_TRADES = [
    ("LONG", Decimal(10), 5, 15, Decimal(1)),  # 100 → 110: pnl 10*10 - 2 = 98
    ("SHORT", Decimal(10), 20, 30, Decimal(1)),  # 110 → 120: pnl -10*10 - 2 = -102 (loser)
    ("LONG", Decimal(20), 40, 50, Decimal(2)),  # 100 → 105: pnl 20*5 - 4 = 96
]


def hand_result(**parameters: Any) -> BacktestResult:
    """Simulate the three trades above bar by bar: equity = cash + position * close."""
    closes = _closes()
    times = [START + timedelta(days=i) for i in range(len(closes))]
    cash, position = Decimal(10_000), Decimal(0)
    entries = {t[2]: t for t in HAND_TRADES}
    exits = {t[3]: t for t in HAND_TRADES}
    trades, equity, open_trade = [], [], None
    for i, price in enumerate(closes):
        if i in entries:
            side, size, _, _, fee = entries[i]
            signed = size if side == "LONG" else -size
            cash -= signed * price + fee
            position = signed
            open_trade = (side, size, i, price, fee)
        exposed = open_trade is not None
        if i in exits:
            side, size, entry_bar, entry_price, fee = open_trade
            cash += position * price - fee
            sign = 1 if side == "LONG" else -1
            trades.append(
                ClosedTrade(
                    symbol="BTC_JPY",
                    side=side,
                    size=size,
                    entry_time=times[entry_bar],
                    exit_time=times[i],
                    entry_price=entry_price,
                    exit_price=price,
                    pnl=sign * size * (price - entry_price) - 2 * fee,
                    fees=2 * fee,
                    entry_bar=entry_bar,
                    exit_bar=i,
                )
            )
            position, open_trade = Decimal(0), None
        equity.append(EquityPoint(times[i], cash + position * price, exposed))
    return BacktestResult(
        initial_cash=Decimal(10_000),
        equity=equity,
        trades=trades,
        fees_paid=sum((t.fees for t in trades), Decimal(0)),
        prices={"BTC_JPY": list(zip(times, closes, strict=True))},
        parameters=parameters or {"strategy": "hand", "params": {"n": 3}, "cash": 10_000},
    )


def test_hand_made_run_matches_hand_computed_metrics() -> None:
    result = hand_result()
    # the simulation itself: pnl 98 - 102 + 96 = 92 on 10 000
    assert [t.pnl for t in result.trades] == [Decimal(98), Decimal(-102), Decimal(96)]
    assert result.equity[-1].equity == Decimal(10_092)

    m = compute_metrics(result)

    assert m["start"] == "2024-01-01T00:00:00+00:00"
    assert m["end"] == "2024-02-29T00:00:00+00:00"
    assert m["duration_days"] == 59.0
    # return: 92 / 10 000 = 0.92 %
    assert m["return_pct"] == pytest.approx(0.92)
    assert m["final_equity"] == 10_092.0
    # peak: 10 098 after the first trade's exit (bars 15-19)
    assert m["peak_equity"] == 10_098.0
    # buy & hold: close 100 → 105
    assert m["buy_and_hold_return_pct"] == pytest.approx(5.0)
    # exposure: bars 5..15, 20..30, 40..50 = 3 * 11 of 60 bars
    assert m["exposure_time_pct"] == pytest.approx(55.0)
    assert m["trades"] == 3
    # 2 winners of 3
    assert m["win_rate_pct"] == pytest.approx(200 / 3)
    # trade returns (pl_pct): 10/100 - 2/1000 = 0.098; -(120/110 - 1) - 2/1100 = -1.02/11;
    # 5/100 - 4/2000 = 0.048
    r = [0.098, -1.02 / 11, 0.048]
    assert m["best_trade_pct"] == pytest.approx(9.8)
    assert m["worst_trade_pct"] == pytest.approx(-102 / 11)
    # profit factor on returns: (0.098 + 0.048) / (1.02 / 11) = 1.606 / 1.02 = 1.5745098...
    assert m["profit_factor"] == pytest.approx(1.606 / 1.02)
    assert m["expectancy_pct"] == pytest.approx(sum(r) / 3 * 100)
    assert m["avg_trade_pct"] == pytest.approx((math.prod(1 + x for x in r) ** (1 / 3) - 1) * 100)
    # max drawdown: peak 10 098 (bar 19) → trough 9 994 (bar 40, after the third entry's fee)
    assert m["max_drawdown_pct"] == pytest.approx(-104 / 10_098 * 100)
    # two drawdowns: 10 000 → 9 999 (bars 4-6, 2 days, 0.01 %) and bar 19 → end (40 days)
    assert m["max_drawdown_duration_days"] == 40.0
    assert m["avg_drawdown_duration_days"] == 21.0
    assert m["avg_drawdown_pct"] == pytest.approx(-(0.0001 + 104 / 10_098) / 2 * 100)
    assert m["max_trade_duration_days"] == 10.0
    assert m["avg_trade_duration_days"] == 10.0
    # SQN: sqrt(3) * mean(pnl) / stdev(pnl)
    pnl = np.array([98.0, -102.0, 96.0])
    assert m["sqn"] == pytest.approx(math.sqrt(3) * pnl.mean() / pnl.std(ddof=1))
    assert m["fees_paid"] == 8.0
    # days with weekends → 365-day years; 59 day returns compounding to +0.92 %
    gmean = 1.0092 ** (1 / 59) - 1
    assert m["return_ann_pct"] == pytest.approx(((1 + gmean) ** 365 - 1) * 100)
    assert m["calmar_ratio"] == pytest.approx(m["return_ann_pct"] / (104 / 10_098 * 100))


def test_missing_values_are_none_and_json_safe() -> None:
    result = hand_result()
    flat = BacktestResult(
        initial_cash=Decimal(1000),
        equity=[EquityPoint(p.timestamp, Decimal(1000), False) for p in result.equity],
        trades=[],
        fees_paid=Decimal(0),
        prices=result.prices,
        parameters={},
    )
    m = compute_metrics(flat)
    assert m["trades"] == 0
    assert m["return_pct"] == 0.0
    assert m["exposure_time_pct"] == 0.0
    for key in (
        "win_rate_pct",
        "best_trade_pct",
        "profit_factor",
        "sqn",
        "max_trade_duration_days",
        "max_drawdown_duration_days",
        "sharpe_ratio",
        "sortino_ratio",
        "calmar_ratio",
    ):
        assert m[key] is None, key
    assert all(not isinstance(v, float) or math.isfinite(v) for v in m.values())
    orjson.dumps(m)


def test_no_losing_trade_gives_none_profit_factor_not_infinity() -> None:
    result = hand_result()
    winners = BacktestResult(
        result.initial_cash,
        result.equity,
        [t for t in result.trades if t.pnl > 0],
        result.fees_paid,
        result.prices,
        result.parameters,
    )
    assert compute_metrics(winners)["profit_factor"] is None


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="risk_free_rate"):
        compute_metrics(hand_result(), risk_free_rate=1.5)
    empty = BacktestResult(Decimal(1), [], [], Decimal(0), {}, {})
    with pytest.raises(ValueError, match="equity"):
        compute_metrics(empty)


# --------------------------------------------------------------------------- backtesting.py


bt = pytest.importorskip("backtesting")
from backtesting import Backtest, Strategy  # noqa: E402
from backtesting._stats import compute_stats  # noqa: E402
from backtesting.lib import crossover  # noqa: E402
from backtesting.test import BTCUSD, EURUSD, GOOG, SMA  # noqa: E402


class SmaCross(Strategy):
    n1 = 10
    n2 = 20

    def init(self) -> None:
        self.sma1 = self.I(SMA, self.data.Close, self.n1)
        self.sma2 = self.I(SMA, self.data.Close, self.n2)

    def next(self) -> None:
        if crossover(self.sma1, self.sma2):
            self.position.close()
            self.buy()
        elif crossover(self.sma2, self.sma1):
            self.position.close()
            self.sell()


# our key → backtesting.py's key; durations are Timedeltas there, days here
PARITY = {
    "exposure_time_pct": "Exposure Time [%]",
    "final_equity": "Equity Final [$]",
    "peak_equity": "Equity Peak [$]",
    "return_pct": "Return [%]",
    "return_ann_pct": "Return (Ann.) [%]",
    "volatility_ann_pct": "Volatility (Ann.) [%]",
    "cagr_pct": "CAGR [%]",
    "sharpe_ratio": "Sharpe Ratio",
    "sortino_ratio": "Sortino Ratio",
    "calmar_ratio": "Calmar Ratio",
    "max_drawdown_pct": "Max. Drawdown [%]",
    "avg_drawdown_pct": "Avg. Drawdown [%]",
    "max_drawdown_duration_days": "Max. Drawdown Duration",
    "avg_drawdown_duration_days": "Avg. Drawdown Duration",
    "trades": "# Trades",
    "win_rate_pct": "Win Rate [%]",
    "best_trade_pct": "Best Trade [%]",
    "worst_trade_pct": "Worst Trade [%]",
    "avg_trade_pct": "Avg. Trade [%]",
    "max_trade_duration_days": "Max. Trade Duration",
    "avg_trade_duration_days": "Avg. Trade Duration",
    "profit_factor": "Profit Factor",
    "expectancy_pct": "Expectancy [%]",
    "sqn": "SQN",
    "kelly_criterion": "Kelly Criterion",
    "duration_days": "Duration",
}


def _utc(ts: Any) -> datetime:
    return pd.Timestamp(ts).tz_localize("UTC").to_pydatetime()


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))  # round-trips to the same float


def result_from_backtesting(stats: pd.Series, data: pd.DataFrame, cash: float) -> BacktestResult:
    trades_df, curve = stats._trades, stats._equity_curve
    trades = [
        ClosedTrade(
            symbol="X",
            side="LONG" if row.Size > 0 else "SHORT",
            size=_dec(abs(row.Size)),
            entry_time=_utc(row.EntryTime),
            exit_time=_utc(row.ExitTime),
            entry_price=_dec(row.EntryPrice),
            exit_price=_dec(row.ExitPrice),
            pnl=_dec(row.PnL),
            fees=_dec(row.Commission),
            entry_bar=int(row.EntryBar),
            exit_bar=int(row.ExitBar),
        )
        for row in trades_df.itertuples()
    ]
    exposed = np.zeros(len(curve), dtype=bool)
    for t in trades:
        exposed[t.entry_bar : t.exit_bar + 1] = True
    equity = [
        EquityPoint(_utc(ts), _dec(value), bool(flag))
        for ts, value, flag in zip(curve.index, curve["Equity"], exposed, strict=True)
    ]
    return BacktestResult(
        initial_cash=_dec(cash),
        equity=equity,
        trades=trades,
        fees_paid=sum((t.fees for t in trades), Decimal(0)),
        prices={"X": [(_utc(ts), _dec(c)) for ts, c in data["Close"].items()]},
        parameters={"strategy": "SmaCross", "params": {"n1": 10, "n2": 20}},
    )


def _same(ours: Any, theirs: Any) -> bool:
    if isinstance(theirs, pd.Timedelta):
        return ours == theirs / pd.Timedelta(days=1)
    theirs = float(theirs)
    if math.isnan(theirs) or math.isinf(theirs):
        return ours is None
    return ours is not None and math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-9)


# The run the brief names (GOOG daily, weekdays → 252-day years), plus hourly EURUSD (hour
# resolution, 365-day years) and monthly BTCUSD (12 periods a year) for the other branches.
RUNS = {
    "GOOG": (GOOG, 10_000, {}),
    "EURUSD": (EURUSD, 10_000, {}),
    "BTCUSD": (BTCUSD, 1_000_000, {"n1": 3, "n2": 6}),
}


@pytest.fixture(scope="module", params=list(RUNS))
def backtesting_run(request: pytest.FixtureRequest) -> tuple[pd.Series, pd.DataFrame, int]:
    data, cash, params = RUNS[request.param]
    backtest = Backtest(data, SmaCross, cash=cash, commission=0.002, finalize_trades=True)
    return backtest.run(**params), data, cash


def test_metrics_equal_backtesting_py(
    backtesting_run: tuple[pd.Series, pd.DataFrame, int],
) -> None:
    stats, data, cash = backtesting_run
    result = result_from_backtesting(stats, data, cash)
    assert len(result.trades) > 3  # a real run, not a trivial one

    ours = compute_metrics(result)

    mismatched = {
        key: (ours[key], stats[theirs])
        for key, theirs in PARITY.items()
        if not _same(ours[key], stats[theirs])
    }
    assert not mismatched
    assert ours["start"] == _utc(stats["Start"]).isoformat()
    assert ours["end"] == _utc(stats["End"]).isoformat()
    assert math.isclose(ours["fees_paid"], stats["Commissions [$]"], rel_tol=1e-9)


def test_buy_and_hold_and_risk_free_rate_equal_backtesting_py(
    backtesting_run: tuple[pd.Series, pd.DataFrame, int],
) -> None:
    # Backtest.run() starts buy & hold after the indicators' warm-up; compute_stats without a
    # strategy starts it at the first bar, as ours does.
    stats, data, cash = backtesting_run
    result = result_from_backtesting(stats, data, cash)
    equity = stats._equity_curve["Equity"].to_numpy()
    for rate in (0.0, 0.03):
        theirs = compute_stats(stats._trades, equity, data, None, risk_free_rate=rate)
        ours = compute_metrics(result, risk_free_rate=rate)
        assert _same(ours["buy_and_hold_return_pct"], theirs["Buy & Hold Return [%]"])
        assert _same(ours["sharpe_ratio"], theirs["Sharpe Ratio"])
        assert _same(ours["sortino_ratio"], theirs["Sortino Ratio"])


# --------------------------------------------------------------------------- output files


def test_write_outputs_writes_the_four_files(tmp_path: Path) -> None:
    result = hand_result(strategy="SmaCross", params={"fast": 10, "slow": 20}, cash=10_000)
    metrics = compute_metrics(result)

    paths = write_outputs(result, metrics, tmp_path / "out")

    assert set(paths) == {"metrics.json", "trades.csv", "equity.csv", "report.html"}
    assert all(p.is_file() and p.parent == tmp_path / "out" for p in paths.values())
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(paths)

    saved = orjson.loads(paths["metrics.json"].read_bytes())
    assert saved["final_equity"] == 10_092.0
    assert Decimal(saved["final_equity_exact"]) == 10_092
    assert saved["parameters"]["params"] == {"fast": 10, "slow": 20}
    assert saved["profit_factor"] == pytest.approx(metrics["profit_factor"])

    trades_text = paths["trades.csv"].read_text(encoding="utf-8")
    assert trades_text.splitlines()[0] == (
        "entry_time,exit_time,side,size,entry_price,exit_price,pnl,fees,symbol,status"
    )
    rows = list(csv.DictReader(io.StringIO(trades_text)))
    assert rows[1] == {
        "entry_time": "2024-01-21T00:00:00+00:00",
        "exit_time": "2024-01-31T00:00:00+00:00",
        "side": "SHORT",
        "size": "10",
        "entry_price": "110",
        "exit_price": "120",
        "pnl": "-102",
        "fees": "2",
        "symbol": "BTC_JPY",
        "status": "closed",
    }

    equity_text = paths["equity.csv"].read_text(encoding="utf-8")
    assert equity_text.splitlines()[0] == "timestamp,equity,drawdown_pct,exposed"
    equity_rows = list(csv.DictReader(io.StringIO(equity_text)))
    assert len(equity_rows) == 60
    assert equity_rows[40]["equity"] == "9994"
    assert equity_rows[40]["exposed"] == "true"
    assert equity_rows[0]["drawdown_pct"] == "0.0"
    assert min(float(r["drawdown_pct"]) for r in equity_rows) == pytest.approx(
        metrics["max_drawdown_pct"]
    )

    page = paths["report.html"].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>SmaCross(fast=10, slow=20)</title>" in page
    for key in metrics:
        assert key in page  # each metric's row carries its metrics.json name
    # self-contained: BokehJS and the charts' data are inlined, nothing is fetched
    assert "docs_json" in page
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)=["']?(https?:)?//""", page)
    assert "@import" not in page
    # the trades table: the three closed trades, outcome by colour, none open
    trades_table = re.search(r'<table id="trades">.*?</table>', page, re.S).group(0)
    assert trades_table.count("<td>closed</td>") == 3
    assert trades_table.count('class="num pos"') == 2
    assert trades_table.count('class="num neg"') == 1
    assert "<td>SHORT</td>" in trades_table
    assert "no position open at the end" in page


def test_report_titles_engine_parameters_and_masks_url_passwords(tmp_path: Path) -> None:
    result = hand_result(
        strategy="sma_cross",
        strategy_parameters={"fast": 5, "slow": 30},
        database_url="postgresql://trader:s3cret@db:5432/events",
    )
    paths = write_outputs(result, compute_metrics(result), tmp_path)
    page = paths["report.html"].read_text(encoding="utf-8")
    saved = paths["metrics.json"].read_text(encoding="utf-8")
    assert "<title>sma_cross(fast=5, slow=30)</title>" in page
    assert "s3cret" not in page
    assert "s3cret" not in saved
    assert "postgresql://trader:***@db:5432/events" in page


def test_report_aggregates_long_series(tmp_path: Path) -> None:
    """20,000 bars: drawn as 5,000 candles of 4 bars, said so on the page; the file stays
    small (the equity and drawdown lines keep each stretch's extremes, not every point)."""
    n = 20_000
    times = [START + timedelta(minutes=i) for i in range(n)]
    rng = np.random.default_rng(7)
    closes = [Decimal(str(round(100 + x, 4))) for x in np.cumsum(rng.normal(0, 0.5, n))]
    bars = [
        OHLCV(
            Exchange("sim"), Symbol("ETH_JPY"), Timeframe("1m"), t, c, c + 1, c - 1, c, Decimal(2)
        )
        for t, c in zip(times, closes, strict=True)
    ]
    result = BacktestResult(
        initial_cash=Decimal(1000),
        equity=[
            EquityPoint(t, Decimal(1000) + c - closes[0], True)
            for t, c in zip(times, closes, strict=True)
        ],
        trades=[],
        fees_paid=Decimal(0),
        prices={"ETH_JPY": list(zip(times, closes, strict=True))},
        parameters={"strategy": "hold"},
        bars={"ETH_JPY": bars},
    )
    page = write_outputs(result, compute_metrics(result), tmp_path)["report.html"].read_text()
    assert "ETH_JPY: 20,000 bars shown as 5,000 candles of 4 bars (4 min) each" in page
    assert re.search(r"Equity and drawdown lines: [\d,]+ of 20,000 points drawn", page)
    assert len(page.encode()) < 2_500_000  # BokehJS itself is about 1.3 MB of it


def _listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_interrupted_write_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = hand_result()
    metrics = compute_metrics(result)

    def broken_equity_csv(fh: Any, result: BacktestResult) -> None:
        fh.write("timestamp,equity,drawdown_pct,exposed\n2024-01-01T00:00:00+00:00,10")
        fh.flush()
        raise OSError("disk full")

    monkeypatch.setattr(backtest_report, "_write_equity_csv", broken_equity_csv)
    with pytest.raises(OSError, match="disk full"):
        write_outputs(result, metrics, tmp_path)

    files = _listing(tmp_path)
    # the two files before it are complete; the failed one and the one after are absent,
    # and no temporary file is left behind
    assert sorted(files) == ["metrics.json", "trades.csv"]
    assert orjson.loads(files["metrics.json"])["trades"] == 3
    assert len(files["trades.csv"].decode().splitlines()) == 4


def test_interrupted_rewrite_keeps_the_previous_complete_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = hand_result()
    metrics = compute_metrics(result)
    write_outputs(result, metrics, tmp_path)
    before = _listing(tmp_path)

    def broken_equity_csv(fh: Any, result: BacktestResult) -> None:
        fh.write("timestamp,equity")
        raise KeyboardInterrupt

    monkeypatch.setattr(backtest_report, "_write_equity_csv", broken_equity_csv)
    other = hand_result(strategy="other")
    with pytest.raises(KeyboardInterrupt):
        write_outputs(other, compute_metrics(other), tmp_path)

    after = _listing(tmp_path)
    assert sorted(after) == sorted(before)
    assert after["equity.csv"] == before["equity.csv"]
    assert after["report.html"] == before["report.html"]


def test_a_run_leaves_the_collector_as_it_found_it() -> None:
    """`fewer_collections` paces the cyclic collector for a run's millions of long-lived
    objects, and puts it back afterwards, also when the run fails."""
    import gc

    from trading_engine.app.backtest.rig import fewer_collections

    before = gc.get_threshold()
    with fewer_collections(threshold=12_345):
        assert gc.get_threshold()[0] == 12_345
        assert gc.get_freeze_count() > 0
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
