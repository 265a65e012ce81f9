"""Walk-forward analysis, the arithmetic of it: windows, stitching, efficiency.

A walk-forward run cuts the data into windows. In each, a parameter grid is backtested on the
*training* span, the best point (by a metric) is kept, and that point alone is run on the
*test* span that follows, which no choice has seen. The test spans tile the data after the
first training span, so their equity curves, one after the other, are what trading the
re-optimised strategy would have made: the out-of-sample curve.

Windows (:func:`plan_windows`), from the data's first bar time ``S`` with a training length
``T`` and a test length ``t``, for k = 0, 1, ...:

* rolling:  train [S + k·t, S + T + k·t), test [S + T + k·t, S + T + (k+1)·t);
* anchored: train [S, S + T + k·t), the same tests.

Every boundary is counted from ``S`` (never from the previous window), so calendar months
(``3M``) tile without drifting. A test span that would end after the data is not run: the
last, partial window is **dropped** (its days are reported as the untested tail), so every
test span has the same length and the per-window figures compare.

Stitching (:func:`stitch`): each test window starts with the cash the previous one ended
with, i.e. the window returns compound: window k's equity is scaled by (equity at the end of
window k-1) / (its own initial cash), its trades' sizes, P&L and fees by the same factor. A
position open at a test window's end is valued at that window's last close and counted in
the curve; the next window starts in cash (no exit fee is charged for it: the stitched curve
is that much kinder than one continuous run).

Pure computation: no I/O here. Results cross process and machine boundaries as plain data
(:func:`run_detail`, :func:`segment_from_detail`).
"""

from __future__ import annotations

import bisect
import calendar
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from trading_engine.app.backtest.results import (
    BacktestResult,
    ClosedTrade,
    EquityPoint,
    OpenTrade,
    compute_metrics,
    metric_value,  # (re-exported: where the walk-forward's callers found it first)
)

__all__ = [
    "DETAIL",
    "EFFICIENCY_WARNING_BELOW",
    "Efficiency",
    "Segment",
    "Span",
    "Window",
    "annualised_pct",
    "choose",
    "efficiency",
    "metric_value",
    "parse_span",
    "plan_windows",
    "run_detail",
    "segment_from_detail",
    "stitch",
    "stitched_metrics",
    "summarise",
]

DAYS_A_YEAR = 365.25
MAX_WINDOWS = 100_000  # a test length of a minute over years of data is surely a typo
EFFICIENCY_WARNING_BELOW = 0.5

# --------------------------------------------------------------------------- lengths


@dataclass(frozen=True)
class Span:
    """A length of time: calendar months plus a fixed part (``3M``; ``90d``; sums of them)."""

    months: int = 0
    fixed: timedelta = timedelta(0)
    text: str = ""

    def __add__(self, other: Span) -> Span:
        return Span(self.months + other.months, self.fixed + other.fixed)

    def __mul__(self, times: int) -> Span:
        return Span(self.months * times, self.fixed * times)

    def after(self, moment: datetime) -> datetime:
        """``moment`` plus this span: the months first (the day clamped to the month's
        length: Jan 31 + 1M = Feb 28/29), then the fixed part."""
        return _add_months(moment, self.months) + self.fixed

    def __str__(self) -> str:
        return self.text or f"{self.months}M+{self.fixed}"


_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
_UNITS["w"] = timedelta(weeks=1)
_SPAN = re.compile(r"^\s*(\d+)\s*([mhdwM])\s*$")


def parse_span(text: str) -> Span:
    """``90d``, ``12h``, ``4w``, ``30m`` (minutes), ``3M`` (calendar months) → a Span."""
    found = _SPAN.match(text or "")
    if not found or int(found.group(1)) < 1:
        raise ValueError(
            f"expected a length such as 90d, 12h, 4w, 30m (minutes) or 3M (calendar months), "
            f"got {text!r}"
        )
    count, unit = int(found.group(1)), found.group(2)
    label = f"{count}{unit}"
    if unit == "M":
        return Span(months=count, text=label)
    return Span(fixed=_UNITS[unit] * count, text=label)


def _add_months(moment: datetime, months: int) -> datetime:
    if not months:
        return moment
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Window:
    number: int  # 1-based
    train_start: datetime
    train_end: datetime  # = test_start
    test_start: datetime
    test_end: datetime

    @property
    def train_days(self) -> float:
        return (self.train_end - self.train_start) / timedelta(days=1)

    @property
    def test_days(self) -> float:
        return (self.test_end - self.test_start) / timedelta(days=1)


def plan_windows(
    data_start: datetime, data_end: datetime, train: Span, test: Span, anchored: bool = False
) -> list[Window]:
    """The windows over data spanning [data_start, data_end) (the end: where the last bar
    closes). Only whole test spans: a last test span that would pass ``data_end`` is
    dropped. No window fits → []."""
    if test.after(data_start) <= data_start or train.after(data_start) <= data_start:
        raise ValueError("a training and a test length must both be positive")
    windows: list[Window] = []
    while True:
        k = len(windows)
        test_start = (train + test * k).after(data_start)
        test_end = (train + test * (k + 1)).after(data_start)
        if test_end > data_end:
            return windows
        if k >= MAX_WINDOWS:
            raise ValueError(
                f"more than {MAX_WINDOWS:,} windows: a test length of {test} over this data; "
                "choose a longer --test"
            )
        train_start = data_start if anchored else (test * k).after(data_start)
        windows.append(Window(k + 1, train_start, test_start, test_start, test_end))


# --------------------------------------------------------------------------- choosing


def choose(results: Sequence[dict[str, Any]], metric: str, descending: bool) -> int | None:
    """The index of the best of a training window's points by ``metric`` (highest when
    ``descending``; the first in grid order among equals), or None when no point has a
    value (all failed, or the metric is n/a for all)."""
    best: int | None = None
    best_value = 0.0
    for index, result in enumerate(results):
        value = metric_value(result, metric)
        if value is None:
            continue
        if best is None or (value > best_value if descending else value < best_value):
            best, best_value = index, value
    return best


# --------------------------------------------------------------------------- plain data


def _plain(value: Decimal) -> str:
    return format(value, "f")


def run_detail(result: BacktestResult) -> dict[str, Any]:
    """What stitching needs of a run, as plain data (it may cross a network): the equity
    curve ``[[iso time, equity, exposed], ...]``, the closed and still-open trades, and per
    symbol the first and last close from the first equity point on (the buy & hold of the
    traded span, not of the warm-up before it)."""
    since = result.equity[0].timestamp if result.equity else None
    prices: dict[str, list[list[str]]] = {}
    for symbol, series in result.prices.items():
        traded = [(t, close) for t, close in series if since is None or t >= since]
        if traded:
            ends = [traded[0], traded[-1]]
            prices[symbol] = [[t.isoformat(), _plain(close)] for t, close in ends]
    return {
        "equity": [
            [point.timestamp.isoformat(), _plain(point.equity), point.exposed]
            for point in result.equity
        ],
        "closed_trades": [
            {
                "symbol": t.symbol,
                "side": t.side,
                "size": _plain(t.size),
                "entry_time": t.entry_time.isoformat(),
                "exit_time": t.exit_time.isoformat(),
                "entry_price": _plain(t.entry_price),
                "exit_price": _plain(t.exit_price),
                "pnl": _plain(t.pnl),
                "fees": _plain(t.fees),
            }
            for t in result.trades
        ],
        "open_trades": [
            {
                "symbol": t.symbol,
                "side": t.side,
                "size": _plain(t.size),
                "entry_time": t.entry_time.isoformat(),
                "entry_price": _plain(t.entry_price),
                "fees": _plain(t.fees),
                "last_price": _plain(t.last_price),
                "pnl": _plain(t.pnl),
            }
            for t in result.open_trades
        ],
        "prices": prices,
    }


@dataclass(frozen=True)
class Segment:
    """One test window's run, to stitch."""

    initial_cash: Decimal
    equity: Sequence[EquityPoint]
    trades: Sequence[ClosedTrade] = ()
    open_trades: Sequence[OpenTrade] = ()
    prices: dict[str, list[tuple[datetime, Decimal]]] = field(default_factory=dict)


def segment_from_detail(detail: dict[str, Any], initial_cash: Decimal) -> Segment:
    """The inverse of :func:`run_detail` (bar numbers are set when stitched)."""
    time = datetime.fromisoformat
    return Segment(
        initial_cash=initial_cash,
        equity=[
            EquityPoint(time(t), Decimal(equity), bool(exposed))
            for t, equity, exposed in detail["equity"]
        ],
        trades=[
            ClosedTrade(
                symbol=t["symbol"],
                side=t["side"],
                size=Decimal(t["size"]),
                entry_time=time(t["entry_time"]),
                exit_time=time(t["exit_time"]),
                entry_price=Decimal(t["entry_price"]),
                exit_price=Decimal(t["exit_price"]),
                pnl=Decimal(t["pnl"]),
                fees=Decimal(t["fees"]),
                entry_bar=-1,
                exit_bar=-1,
            )
            for t in detail["closed_trades"]
        ],
        open_trades=[
            OpenTrade(
                symbol=t["symbol"],
                side=t["side"],
                size=Decimal(t["size"]),
                entry_time=time(t["entry_time"]),
                entry_price=Decimal(t["entry_price"]),
                fees=Decimal(t["fees"]),
                entry_bar=-1,
                last_price=Decimal(t["last_price"]),
                pnl=Decimal(t["pnl"]),
            )
            for t in detail["open_trades"]
        ],
        prices={
            symbol: [(time(t), Decimal(close)) for t, close in series]
            for symbol, series in detail["prices"].items()
        },
    )


# --------------------------------------------------------------------------- stitching


def stitch(
    segments: Iterable[Segment], initial_cash: Decimal, parameters: dict[str, Any] | None = None
) -> BacktestResult:
    """The segments' equity curves end to end, compounded: each starts with the equity the
    previous one ended with (segment k scaled by that / its own initial cash; its trades'
    size, P&L and fees too, prices unchanged, so each trade's return is its own). Bar
    numbers are positions in the stitched curve. Segments without equity are skipped.

    A position still open at a segment's end is a closed trade of the stitched run, exited
    at the segment's last close (its P&L as valued there, net of the entry fee only): the
    curve takes its value there and the next segment starts in cash. So the stitched run
    has no open trade, and its trade statistics count every position it held."""
    equity: list[EquityPoint] = []
    trades: list[ClosedTrade] = []
    prices: dict[str, list[tuple[datetime, Decimal]]] = {}
    running = initial_cash
    for segment in segments:
        if not segment.equity:
            continue
        factor = running / segment.initial_cash if segment.initial_cash else Decimal(0)
        first = len(equity)
        equity.extend(replace(point, equity=point.equity * factor) for point in segment.equity)
        times = [point.timestamp for point in segment.equity]

        def bar(moment: datetime, times: list[datetime] = times, first: int = first) -> int:
            return first + min(bisect.bisect_left(times, moment), len(times) - 1)

        trades.extend(
            replace(
                t,
                size=t.size * factor,
                pnl=t.pnl * factor,
                fees=t.fees * factor,
                entry_bar=bar(t.entry_time),
                exit_bar=bar(t.exit_time),
            )
            for t in segment.trades
        )
        end, last = segment.equity[-1].timestamp, len(equity) - 1
        trades.extend(  # closed where the curve values them: the next window starts in cash
            ClosedTrade(
                symbol=t.symbol,
                side=t.side,
                size=t.size * factor,
                entry_time=t.entry_time,
                exit_time=end,
                entry_price=t.entry_price,
                exit_price=t.last_price,
                pnl=t.pnl * factor,
                fees=t.fees * factor,
                entry_bar=bar(t.entry_time),
                exit_bar=last,
            )
            for t in segment.open_trades
        )
        for symbol, series in segment.prices.items():
            prices.setdefault(symbol, []).extend(series)
        running = equity[-1].equity
    return BacktestResult(
        initial_cash=initial_cash,
        equity=equity,
        trades=trades,
        fees_paid=sum((t.fees for t in trades), Decimal(0)),
        prices=prices,
        parameters=dict(parameters or {}),
    )


def stitched_metrics(result: BacktestResult) -> dict[str, Any]:
    """:func:`compute_metrics` of a stitched curve ({} without one)."""
    return compute_metrics(result) if result.equity else {}


# --------------------------------------------------------------------------- efficiency


def annualised_pct(returns: Sequence[tuple[float, float]]) -> float | None:
    """Returns of consecutive spans, ``(return_pct, days)`` each, as one compound annual
    rate in percent: exp(Σ ln(1 + r) / Σ days · 365.25) - 1. None without days; -100 when
    a span lost everything."""
    days = sum(d for _, d in returns)
    if days <= 0:
        return None
    if any(1 + r / 100 <= 0 for r, _ in returns):
        return -100.0
    growth = sum(math.log1p(r / 100) for r, _ in returns)
    try:
        return math.expm1(growth / days * DAYS_A_YEAR) * 100
    except OverflowError:
        return math.inf


@dataclass(frozen=True)
class Efficiency:
    in_sample_ann_pct: float | None
    out_of_sample_ann_pct: float | None
    ratio: float | None  # None when the in-sample rate is not positive
    warning: str | None


def efficiency(
    in_sample: Sequence[tuple[float, float]],
    out_of_sample: Sequence[tuple[float, float]],
    threshold: float = EFFICIENCY_WARNING_BELOW,
) -> Efficiency:
    """Walk-forward efficiency (R. Pardo's): the annualised out-of-sample return over the
    annualised in-sample return.

    ``in_sample``: ``(return_pct, days)`` of each window's chosen training run. Training
    spans overlap in rolling and anchored windows alike, so they are not compounded: their
    rate is the average of the windows' annual rates (of log growth, so that +50 % and -33 %
    average to 0). ``out_of_sample``: each test window's; the test spans tile the time, so
    they compound (the stitched curve's own rate).

    Why returns and not the metric the windows were chosen by: a ratio of returns means the
    same whatever that metric (a ratio of drawdowns, or of Sharpe ratios near zero, says
    little), and annualising makes a 365-day training span and a 90-day test span comparable.
    The chosen metric is reported next to it, in and out of sample, all the same.

    Warning, the rule: the in-sample rate is positive and the out-of-sample rate is at or
    below zero, or below ``threshold`` (0.5) times the in-sample rate. (Pardo reads an
    efficiency under 50 % as a sign of over-fitting.) An in-sample rate at or below zero
    gives no ratio (it would not mean anything) and no warning: the best training run lost
    money already.
    """
    rates = [annualised_pct([window]) for window in in_sample]
    known = [math.log1p(rate / 100) for rate in rates if rate is not None and rate > -100]
    if not rates or any(rate is None for rate in rates):
        in_rate = None
    elif len(known) < len(rates):  # a training run lost everything
        in_rate = -100.0
    else:
        in_rate = math.expm1(sum(known) / len(known)) * 100
    out_rate = annualised_pct(out_of_sample)
    ratio = warning = None
    if in_rate is not None and out_rate is not None and in_rate > 0:
        ratio = out_rate / in_rate
        if out_rate <= 0:
            warning = (
                f"in-sample beats out-of-sample by a wide margin: the chosen parameters made "
                f"{in_rate:.2f} %/year in their training windows and {out_rate:.2f} %/year on "
                "the unseen test windows: likely over-fitted"
            )
        elif ratio < threshold:
            warning = (
                f"in-sample beats out-of-sample by a wide margin: walk-forward efficiency "
                f"{ratio:.2f} < {threshold:g} ({out_rate:.2f} %/year out of sample against "
                f"{in_rate:.2f} %/year in sample): likely over-fitted"
            )
    return Efficiency(in_rate, out_rate, ratio, warning)


# --------------------------------------------------------------------------- the whole run

DETAIL = "detail"  # a test run's result: run_point's keys, and run_detail's data under this
WARNING_RULE = (
    f"warned when the in-sample annual return is positive and the out-of-sample one is at "
    f"or below zero, or below {EFFICIENCY_WARNING_BELOW:g} times it"
)


def _metrics(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if result is None or "error" in result:
        return None
    return {k: v for k, v in result.items() if k not in ("parameters", "point", DETAIL)}


def _mean(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return sum(known) / len(known) if known else None


def summarise(
    windows: Sequence[Window],
    training: Sequence[Sequence[dict[str, Any]]],
    tests: Sequence[dict[str, Any] | None],
    *,
    metric: str,
    descending: bool,
    initial_cash: Decimal,
) -> dict[str, Any]:
    """The walk-forward's results as plain data: per window (``training[i]``: its points'
    results in grid order; ``tests[i]``: the chosen point's test run, its
    :func:`run_detail` under ``"detail"``, None if none ran), the stitched out-of-sample
    curve and its metrics, the in-sample figures next to them, the efficiency and its
    warning."""
    rows: list[dict[str, Any]] = []
    segments: list[Segment] = []
    in_sample: list[tuple[float, float]] = []
    out_of_sample: list[tuple[float, float]] = []
    failed_points = sum(1 for results in training for r in results if "error" in r)
    for window, results, test in zip(windows, training, tests, strict=True):
        chosen = choose(results, metric, descending)
        best = None if chosen is None else results[chosen]
        failed = [r for r in results if "error" in r]
        error = None
        if best is None:
            error = f"no point of the training window has a value of {metric}"
            if failed:
                error += f" ({len(failed)} of {len(results)} failed: {failed[0]['error']})"
        elif test is None:
            error = "the test window was not run"
        elif "error" in test:
            failed_points += 1
            error = f"the test run failed: {test['error']}"
        is_metrics, oos_metrics = _metrics(best), _metrics(test)
        if is_metrics is not None and oos_metrics is not None and test is not None:
            segments.append(segment_from_detail(test[DETAIL], initial_cash))
            in_sample.append((is_metrics["return_pct"], window.train_days))
            out_of_sample.append((oos_metrics["return_pct"], window.test_days))
        rows.append(
            {
                "window": window.number,
                "train_start": window.train_start.isoformat(),
                "train_end": window.train_end.isoformat(),
                "test_start": window.test_start.isoformat(),
                "test_end": window.test_end.isoformat(),
                "parameters": None if best is None else best["parameters"],
                "point": None if chosen is None else chosen + 1,
                "in_sample_metric": None if best is None else metric_value(best, metric),
                "out_of_sample_metric": None if test is None else metric_value(test, metric),
                "in_sample_return_pct": None if is_metrics is None else is_metrics["return_pct"],
                "out_of_sample_return_pct": None
                if oos_metrics is None
                else oos_metrics["return_pct"],
                # positions the test run held: closed in the window, or open at its end
                "trades": None
                if oos_metrics is None
                else oos_metrics["trades"] + oos_metrics["open_trades"],
                "failed_points": len(failed),
                "error": error,
                "in_sample": is_metrics,
                "out_of_sample": oos_metrics,
                "training": [{"point": n, **r} for n, r in enumerate(results, start=1)],
            }
        )
    curve = stitch(segments, initial_cash)
    stitched = stitched_metrics(curve)
    rates = efficiency(in_sample, out_of_sample)
    tested = [row for row in rows if row["error"] is None]
    return {
        "windows": rows,
        "summary": {
            "windows": len(rows),
            "windows_tested": len(tested),
            "failed_windows": len(rows) - len(tested),
            "points": sum(len(results) for results in training)
            + sum(1 for test in tests if test is not None),
            "failed_points": failed_points,
            "metric": metric,
            "descending": descending,
            "in_sample_metric_mean": _mean(row["in_sample_metric"] for row in tested),
            "out_of_sample_metric_mean": _mean(row["out_of_sample_metric"] for row in tested),
            "out_of_sample_metric_stitched": stitched.get(metric),
            "in_sample_return_ann_pct": rates.in_sample_ann_pct,
            "out_of_sample_return_ann_pct": rates.out_of_sample_ann_pct,
            "efficiency": rates.ratio,
            "efficiency_threshold": EFFICIENCY_WARNING_BELOW,
            "warning": rates.warning,
            "warning_rule": WARNING_RULE,
        },
        "out_of_sample": {
            "metrics": stitched,
            "equity": [[p.timestamp.isoformat(), float(p.equity)] for p in curve.equity],
        },
    }
