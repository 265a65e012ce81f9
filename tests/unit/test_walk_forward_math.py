"""Walk-forward arithmetic (app/backtest/walk_forward.py): lengths, windows, choosing a point,
stitching the test windows (returns compound), the efficiency and its warning; and the
research pages' heat map (app/backtest/research_report.py)."""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest

from trading_engine.app.backtest.research_report import (
    heatmap_html,
    sweep_report_html,
    walk_forward_report_html,
)
from trading_engine.app.backtest.results import (
    BacktestResult,
    ClosedTrade,
    EquityPoint,
    OpenTrade,
    compute_metrics,
)
from trading_engine.app.backtest.walk_forward import (
    DETAIL,
    Segment,
    Window,
    annualised_pct,
    choose,
    efficiency,
    parse_span,
    plan_windows,
    run_detail,
    segment_from_detail,
    stitch,
    summarise,
)

START = datetime(2024, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)

# --------------------------------------------------------------------------- lengths


@pytest.mark.parametrize(
    ("text", "months", "fixed"),
    [
        ("90d", 0, timedelta(days=90)),
        ("12h", 0, timedelta(hours=12)),
        ("4w", 0, timedelta(weeks=4)),
        ("30m", 0, timedelta(minutes=30)),
        ("3M", 3, timedelta(0)),
        (" 7d ", 0, timedelta(days=7)),
    ],
)
def test_lengths_read_as_given(text: str, months: int, fixed: timedelta) -> None:
    span = parse_span(text)
    assert (span.months, span.fixed) == (months, fixed)
    assert str(span) == text.strip()


@pytest.mark.parametrize("text", ["", "90", "d", "0d", "-5d", "1.5d", "90x", "3y", "90 days"])
def test_bad_lengths_are_refused_with_the_forms_that_work(text: str) -> None:
    with pytest.raises(ValueError, match=r"90d, 12h, 4w, 30m \(minutes\) or 3M"):
        parse_span(text)


# --------------------------------------------------------------------------- windows


def test_rolling_windows_slide_by_the_test_length_and_tile_the_tests() -> None:
    end = START + 365 * DAY  # [2024-01-01, 2024-12-31)
    windows = plan_windows(START, end, parse_span("90d"), parse_span("30d"))
    # tests from day 90 on, 30 days each, while they end by day 365: (365 - 90) // 30 = 9
    assert len(windows) == 9
    assert [w.number for w in windows] == list(range(1, 10))
    for k, window in enumerate(windows):
        assert window.train_start == START + k * 30 * DAY
        assert window.train_end == window.test_start == START + (90 + k * 30) * DAY
        assert window.test_end == window.test_start + 30 * DAY
        assert window.train_days == 90
        assert window.test_days == 30
    assert all(a.test_end == b.test_start for a, b in itertools.pairwise(windows))
    # the last, partial test span is dropped: the next would end after the data
    assert windows[-1].test_end == START + 360 * DAY <= end < windows[-1].test_end + 30 * DAY


def test_anchored_windows_keep_the_start_and_grow() -> None:
    end = START + 365 * DAY
    rolling = plan_windows(START, end, parse_span("90d"), parse_span("30d"))
    anchored = plan_windows(START, end, parse_span("90d"), parse_span("30d"), anchored=True)
    assert [(w.test_start, w.test_end) for w in anchored] == [
        (w.test_start, w.test_end) for w in rolling
    ]
    assert all(w.train_start == START for w in anchored)
    assert [w.train_days for w in anchored] == [90 + 30 * k for k in range(9)]


def test_a_test_span_ending_exactly_at_the_data_end_is_kept() -> None:
    windows = plan_windows(START, START + 120 * DAY, parse_span("90d"), parse_span("30d"))
    assert len(windows) == 1
    assert windows[0].test_end == START + 120 * DAY
    assert plan_windows(START, START + 120 * DAY - timedelta(seconds=1), *_spans()) == []


def _spans() -> tuple[Any, Any]:
    return parse_span("90d"), parse_span("30d")


def test_calendar_months_count_from_the_start_and_do_not_drift() -> None:
    start = datetime(2023, 1, 31, tzinfo=UTC)
    windows = plan_windows(
        start, datetime(2023, 8, 1, tzinfo=UTC), parse_span("1M"), parse_span("1M")
    )
    # each boundary is start + n months, clamped to the month's length: never the 28th after
    # February
    assert [w.test_start.date().isoformat() for w in windows] == [
        "2023-02-28",
        "2023-03-31",
        "2023-04-30",
        "2023-05-31",
        "2023-06-30",
    ]
    assert windows[-1].test_end == datetime(2023, 7, 31, tzinfo=UTC)


def test_no_window_when_the_data_are_shorter_than_train_plus_test() -> None:
    assert plan_windows(START, START + 100 * DAY, parse_span("90d"), parse_span("30d")) == []


def test_too_many_windows_is_refused() -> None:
    with pytest.raises(ValueError, match="more than 100,000 windows"):
        plan_windows(START, START + 400 * DAY, parse_span("1d"), parse_span("1m"))


# --------------------------------------------------------------------------- choosing


def test_choose_the_best_point_that_has_a_value() -> None:
    results = [
        {"parameters": {"a": 1}, "sharpe_ratio": 0.5},
        {"parameters": {"a": 2}, "error": "fast_window must be below slow_window"},
        {"parameters": {"a": 3}, "sharpe_ratio": None},
        {"parameters": {"a": 4}, "sharpe_ratio": float("nan")},
        {"parameters": {"a": 5}, "sharpe_ratio": 1.5},
        {"parameters": {"a": 6}, "sharpe_ratio": 1.5},  # a tie: the first in grid order wins
        {"parameters": {"a": 7}, "sharpe_ratio": -2.0},
    ]
    assert choose(results, "sharpe_ratio", descending=True) == 4
    assert choose(results, "sharpe_ratio", descending=False) == 6
    assert choose(results[1:4], "sharpe_ratio", descending=True) is None
    assert choose([], "sharpe_ratio", descending=True) is None


# --------------------------------------------------------------------------- stitching


def _curve(first: datetime, values: list[str]) -> list[EquityPoint]:
    return [EquityPoint(first + n * DAY, Decimal(v), exposed=n > 0) for n, v in enumerate(values)]


def _trade(entry: datetime, exit_: datetime, pnl: str) -> ClosedTrade:
    return ClosedTrade(
        symbol="X",
        side="LONG",
        size=Decimal(2),
        entry_time=entry,
        exit_time=exit_,
        entry_price=Decimal(50),
        exit_price=Decimal(55),
        pnl=Decimal(pnl),
        fees=Decimal("0.5"),
        entry_bar=99,
        exit_bar=99,
    )


def test_stitching_compounds_the_window_returns() -> None:
    second = START + 10 * DAY
    segments = [
        Segment(
            Decimal(100),
            _curve(START, ["100", "105", "110"]),
            trades=[_trade(START + DAY, START + 2 * DAY, "10")],
        ),
        Segment(
            Decimal(100),
            _curve(second, ["100", "95", "90"]),
            open_trades=[
                OpenTrade(
                    symbol="X",
                    side="SHORT",
                    size=Decimal(1),
                    entry_time=second + DAY,
                    entry_price=Decimal(20),
                    fees=Decimal("0.1"),
                    entry_bar=7,
                    last_price=Decimal(30),
                    pnl=Decimal("-10.1"),
                )
            ],
        ),
    ]
    result = stitch(segments, Decimal(100))
    # the second window starts with the 110 the first ended with: -10 % of 110
    assert [p.equity for p in result.equity] == [
        Decimal(100),
        Decimal(105),
        Decimal(110),
        Decimal(110),
        Decimal("104.5"),
        Decimal(99),
    ]
    assert result.equity[-1].equity == Decimal(100) * Decimal("1.1") * Decimal("0.9")
    assert [p.timestamp for p in result.equity][3] == second
    # the first window's trade as it was; the position open at the second's end, closed
    # there at its last close, scaled by 1.1 (its return unchanged), on stitched bar numbers
    first, carried = result.trades
    assert (first.pnl, first.size, first.entry_bar, first.exit_bar) == (
        Decimal(10),
        Decimal(2),
        1,
        2,
    )
    assert carried.side == "SHORT"
    assert carried.exit_price == Decimal(30)
    assert carried.size == Decimal("1.1")
    assert carried.pnl == Decimal("-11.11")
    assert carried.fees == Decimal("0.11")
    assert (carried.entry_bar, carried.exit_bar, carried.exit_time) == (4, 5, second + 2 * DAY)
    assert result.open_trades == []
    assert result.fees_paid == Decimal("0.5") + Decimal("0.11")


def test_stitching_a_bust_keeps_the_account_at_zero() -> None:
    segments = [
        Segment(Decimal(100), _curve(START, ["100", "40", "0"])),
        Segment(Decimal(100), _curve(START + 5 * DAY, ["100", "150"])),
    ]
    result = stitch(segments, Decimal(100))
    assert [p.equity for p in result.equity][2:] == [Decimal(0)] * 3


def test_a_run_crosses_processes_as_plain_data_and_comes_back_the_same() -> None:
    segment = Segment(
        Decimal(1000),
        _curve(START, ["1000", "1010.5", "990.25"]),
        trades=[_trade(START + DAY, START + 2 * DAY, "-9.75")],
        prices={"X": [(START, Decimal(50)), (START + 2 * DAY, Decimal("49.5"))]},
    )
    result = BacktestResult(
        initial_cash=Decimal(1000),
        equity=list(segment.equity),
        trades=list(segment.trades),
        fees_paid=Decimal("0.5"),
        prices={"X": [(START - DAY, Decimal(48)), *segment.prices["X"]]},  # a warm-up bar
        parameters={},
    )
    detail = run_detail(result)
    back = segment_from_detail(json.loads(json.dumps(detail)), Decimal(1000))
    assert back.equity == segment.equity
    assert [(t.pnl, t.entry_time) for t in back.trades] == [(Decimal("-9.75"), START + DAY)]
    assert back.prices == segment.prices  # from the first equity point on: no warm-up bar


# --------------------------------------------------------------------------- efficiency


def test_annual_rates_compound_over_consecutive_spans() -> None:
    assert annualised_pct([(10.0, 182.625)]) == pytest.approx(21.0)  # +10 % a half-year
    # two quarters of +10 % are one half-year of +21 %
    two = annualised_pct([(10.0, 91.3125), (10.0, 91.3125)])
    assert two == pytest.approx(annualised_pct([(21.0, 182.625)]))
    assert two == pytest.approx(46.41)
    assert annualised_pct([(-100.0, 30.0), (50.0, 30.0)]) == -100.0
    assert annualised_pct([]) is None


def test_in_sample_far_above_out_of_sample_warns() -> None:
    in_sample = [(20.0, 365.25), (20.0, 365.25)]  # 20 %/year
    weak = efficiency(in_sample, [(1.0, 91.3125), (1.0, 91.3125)])  # 4.06 %/year
    assert weak.in_sample_ann_pct == pytest.approx(20.0)
    assert weak.ratio == pytest.approx(weak.out_of_sample_ann_pct / 20.0)
    assert weak.ratio < 0.5
    assert weak.warning is not None
    assert "efficiency 0.20 < 0.5" in weak.warning

    losing = efficiency(in_sample, [(-5.0, 91.3125)])
    assert losing.ratio is not None
    assert losing.ratio < 0
    assert losing.warning is not None
    assert "unseen test windows" in losing.warning

    fine = efficiency(in_sample, [(4.0, 91.3125), (4.0, 91.3125)])  # about 17 %/year
    assert fine.ratio == pytest.approx(0.849, abs=1e-3)
    assert fine.warning is None

    # the best training run already lost: no ratio, nothing to warn about
    lost = efficiency([(-3.0, 365.25)], [(5.0, 91.3125)])
    assert lost.ratio is None
    assert lost.warning is None


def test_in_sample_rates_average_as_log_growth() -> None:
    # +50 % and -33.3 % a year in two training windows average to 0, not to +8 %
    flat = efficiency([(50.0, 365.25), (-100 / 3, 365.25)], [(1.0, 365.25)])
    assert flat.in_sample_ann_pct == pytest.approx(0.0, abs=1e-9)
    assert flat.ratio is None


# --------------------------------------------------------------------------- summarise


def _window(n: int) -> Window:
    start = START + (n - 1) * 30 * DAY
    return Window(n, start, start + 60 * DAY, start + 60 * DAY, start + 90 * DAY)


def _test_run(first: datetime, values: list[str]) -> dict[str, Any]:
    result = BacktestResult(Decimal(100), _curve(first, values), [], Decimal(0), {}, {})
    return {"parameters": {"a": 1}, **compute_metrics(result), DETAIL: run_detail(result)}


def test_summary_reports_a_window_where_nothing_could_be_chosen() -> None:
    windows = [_window(1), _window(2), _window(3)]
    good = {"parameters": {"a": 1}, "return_pct": 10.0, "sharpe_ratio": 1.0}
    training = [
        [good, {"parameters": {"a": 2}, "error": "bad point"}],
        [{"parameters": {"a": 1}, "error": "no bar"}, {"parameters": {"a": 2}, "error": "x"}],
        [good, {"parameters": {"a": 2}, "return_pct": 12.0, "sharpe_ratio": 0.5}],
    ]
    tests = [
        _test_run(windows[0].test_start, ["100", "110"]),
        None,
        {"parameters": {"a": 1}, "error": "no bar in the test window"},
    ]
    document = summarise(
        windows, training, tests, metric="sharpe_ratio", descending=True, initial_cash=Decimal(100)
    )
    rows = document["windows"]
    assert rows[0]["error"] is None
    assert rows[0]["parameters"] == {"a": 1}
    assert rows[0]["failed_points"] == 1
    assert rows[0]["out_of_sample_return_pct"] == 10.0
    assert rows[1]["error"] == (
        "no point of the training window has a value of sharpe_ratio (2 of 2 failed: no bar)"
    )
    assert rows[2]["error"] == "the test run failed: no bar in the test window"
    summary = document["summary"]
    assert (summary["windows"], summary["windows_tested"], summary["failed_windows"]) == (3, 1, 2)
    assert summary["failed_points"] == 4  # three training points and one test run
    assert summary["points"] == 6 + 2
    assert document["out_of_sample"]["metrics"]["return_pct"] == pytest.approx(10.0)
    assert [e for _, e in document["out_of_sample"]["equity"]] == [100.0, 110.0]
    assert DETAIL not in str(rows[0]["out_of_sample"])


# --------------------------------------------------------------------------- research pages


class _Cells(HTMLParser):
    """The heat map's cells: (text, style, title) in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "td" and "cell" in (found.get("class") or ""):
            self._open = {"text": "", **found}
            self.cells.append(self._open)

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open["text"] += data


def _point(fast: int, slow: int, shorting: bool, sharpe: float | None) -> dict[str, Any]:
    parameters = {"fast_window": fast, "slow_window": slow, "allow_short": shorting}
    if sharpe is None:
        return {"parameters": parameters, "error": f"fast_window {fast} >= slow_window {slow}"}
    return {"parameters": parameters, "sharpe_ratio": sharpe}


def _hue(style: str) -> int:
    return int(style.split("hsl(")[1].split(",")[0])


def test_heat_map_colours_the_best_green_and_collapses_other_axes() -> None:
    results = [
        _point(5, 20, False, 0.2),
        _point(5, 20, True, 0.9),  # the better of the two (5, 20) points
        _point(10, 20, False, -0.4),
        _point(10, 20, True, -0.1),
        _point(30, 20, False, None),  # every point of this cell failed
        _point(30, 20, True, None),
    ]
    axes = {"fast_window": [5, 10, 30], "slow_window": [20], "allow_short": [False, True]}
    page = heatmap_html(results, "fast_window", "slow_window", "sharpe_ratio", axes=axes)
    parser = _Cells()
    parser.feed(page)
    best, worst, failed = parser.cells
    assert best["text"] == "0.900"
    assert _hue(best["style"]) == 120
    assert worst["text"] == "-0.100"
    assert _hue(worst["style"]) == 0
    assert "best of 2 points" in best["title"]
    assert failed["text"] == ""
    assert "blank" in failed["class"]
    assert "style" not in failed
    assert failed["title"] == (
        "slow_window=20, fast_window=30: 2 of 2 failed: fast_window 30 >= slow_window 20"
    )
    assert "best value over the other swept parameters (allow_short)" in page

    # lower is better: the colours turn round
    parser = _Cells()
    parser.feed(heatmap_html(results, "fast_window", None, "sharpe_ratio", descending=False))
    low, high, _ = sorted(parser.cells, key=lambda c: c["text"] or "~")
    assert (low["text"], _hue(low["style"])) == ("-0.400", 120)
    assert (high["text"], _hue(high["style"])) == ("0.200", 0)


def test_sweep_page_has_the_ranking_and_a_heat_map_and_escapes_errors() -> None:
    results = [
        {"point": 2, **_point(10, 20, True, 0.7)},
        {"point": 1, **_point(5, 20, True, 0.3)},
        {"point": 3, "parameters": {"fast_window": 30, "slow_window": 20}, "error": "<b>no</b>"},
    ]
    document = {
        "strategy": "moving_average_cross",
        "sort": "sharpe_ratio",
        "descending": True,
        "axes": {"fast_window": [5, 10, 30], "slow_window": [20]},
        "fixed": {"allow_short": True},
        "cash": "10000",
        "commission": "0.002",
        "data": ["GOOG.csv"],
        "synthetic": None,
        "results": results,
    }
    page = sweep_report_html(document)
    assert page.startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    assert "<script" not in page
    assert "http" not in page.replace("http://www.w3.org", "")
    assert page.count('<table class="heat">') == 1
    assert "&lt;b&gt;no&lt;/b&gt;" in page
    assert "<b>no</b>" not in page
    ranking = page.split('id="ranking"')[1]
    assert ranking.index(">0.7<") < ranking.index(">0.3<")
    assert "1 failed" in page


def test_walk_forward_page_draws_the_curve_and_says_the_warning() -> None:
    windows = [_window(1)]
    document = summarise(
        windows,
        [[{"parameters": {"a": 1}, "return_pct": 30.0, "sharpe_ratio": 2.0}]],
        [_test_run(windows[0].test_start, ["100", "99", "98"])],
        metric="sharpe_ratio",
        descending=True,
        initial_cash=Decimal(100),
    )
    assert document["summary"]["warning"] is not None
    page = walk_forward_report_html(
        {"strategy": "s", "train": "60d", "test": "30d", "cash": "100", **document}
    )
    assert "<svg" in page
    assert "<polyline" in page
    assert "Warning:" in page
    assert "likely over-fitted" in page
    assert page.count("<tr><td class=num>1</td>") == 1  # the window's row
    assert not math.isnan(document["summary"]["out_of_sample_return_ann_pct"])


def test_heat_map_of_a_search_takes_its_columns_from_the_points() -> None:
    """A search's axes are ranges ({"low", "high", ...}), not values: the columns are the
    values its trials drew."""
    results = [_point(7, 20, True, 0.1), _point(13, 20, True, 0.2)]
    axes = {"fast_window": {"low": 5, "high": 50, "step": None, "log": False}}
    page = heatmap_html(results, "fast_window", "slow_window", "sharpe_ratio", axes=axes)
    header = page.split("<thead>")[1].split("</thead>")[0]
    assert '<th class="num">7</th><th class="num">13</th>' in header
    assert ">low<" not in header
