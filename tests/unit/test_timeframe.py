"""Timeframes of any length: fixed (s, m, h, d), calendar weeks (w) and calendar months (M);
symbols as bar files and ccxt name them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from trading_engine.adapters.brokers.simulated_book import base_and_quote
from trading_engine.adapters.strategies.base import BarStrategy
from trading_engine.app.runtime.config import ConfigError, load_settings
from trading_engine.domain.bars import BarBuilder, bar_end, bucket_start, nested
from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.market import Trade
from trading_engine.domain.models import OHLCV
from trading_engine.domain.values import (
    NOMINAL_MONTH_SECONDS,
    Exchange,
    Side,
    SignalAction,
    Symbol,
    Timeframe,
)

JST = timezone(timedelta(hours=9))


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# -- parsing and lengths -----------------------------------------------------------------------


def test_units_and_lengths() -> None:
    assert Timeframe("1m").seconds == 60  # lower m: minutes, as ever
    assert Timeframe("1w").seconds == 7 * 86_400
    assert Timeframe("2w").seconds == 14 * 86_400
    assert Timeframe("1M").seconds == NOMINAL_MONTH_SECONDS == 2_629_746  # nominal
    assert Timeframe("3M").seconds == 3 * NOMINAL_MONTH_SECONDS
    assert Timeframe("1M") != Timeframe("1m")
    assert [Timeframe(t).is_calendar for t in ("1s", "1m", "1h", "1d", "7d", "1w", "1M")] == [
        False,
        False,
        False,
        False,
        False,
        True,
        True,
    ]
    assert Timeframe("12M").is_monthly
    assert not Timeframe("1w").is_monthly
    assert (Timeframe("15m").count, Timeframe("15m").unit) == (15, "m")


@pytest.mark.parametrize("bad", ["1W", "1y", "0M", "1H", "M", "10000M", "1mo"])
def test_bad_timeframes_name_the_choices(bad: str) -> None:
    with pytest.raises(InvalidValue, match=r"1w, 1M \(M: calendar months\)"):
        Timeframe(bad)


# -- calendar months ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stamp", "start", "end"),
    [
        (at(2024, 1, 1), at(2024, 1, 1), at(2024, 2, 1)),
        (at(2013, 4, 30), at(2013, 4, 1), at(2013, 5, 1)),  # BTCUSD's month-end stamps
        (at(2012, 2, 29), at(2012, 2, 1), at(2012, 3, 1)),
        (at(2024, 12, 31, 23, 59), at(2024, 12, 1), at(2025, 1, 1)),
        (at(2024, 3, 15, 12), at(2024, 3, 1), at(2024, 4, 1)),
        (datetime(2024, 2, 1, tzinfo=JST), at(2024, 1, 1), at(2024, 2, 1)),  # Jan 31 15:00 UTC
        (at(1969, 12, 15), at(1969, 12, 1), at(1970, 1, 1)),
    ],
)
def test_a_month_bar_is_the_calendar_month_holding_its_stamp(
    stamp: datetime, start: datetime, end: datetime
) -> None:
    month = Timeframe("1M")

    assert month.start_of(stamp) == start
    assert month.end_of(stamp) == end
    assert bucket_start(stamp, month) == start


def test_quarters_and_years_count_from_january() -> None:
    quarter, year = Timeframe("3M"), Timeframe("12M")

    assert quarter.start_of(at(2024, 5, 20)) == at(2024, 4, 1)
    assert quarter.end_of(at(2024, 3, 31)) == at(2024, 4, 1)  # a quarter-end stamp
    assert quarter.end_of(at(2024, 11, 1)) == at(2025, 1, 1)
    assert year.start_of(at(2024, 7, 4)) == at(2024, 1, 1)
    assert year.end_of(at(2023, 12, 29)) == at(2024, 1, 1)


# -- weeks and fixed lengths -------------------------------------------------------------------


def test_weeks_start_on_monday() -> None:
    week = Timeframe("1w")

    assert week.start_of(at(2024, 1, 3, 15)) == at(2024, 1, 1)  # Wednesday -> Monday
    assert week.start_of(at(2024, 1, 1)) == at(2024, 1, 1)
    assert week.end_of(at(2024, 1, 7)) == at(2024, 1, 8)  # a Sunday stamp (pandas "W")
    assert week.end_of(at(2024, 1, 1)) == at(2024, 1, 8)
    assert Timeframe("2w").start_of(at(1970, 1, 18)) == at(1970, 1, 5)
    assert Timeframe("7d").start_of(at(2024, 1, 3)) == at(2023, 12, 28)  # 7d: from the epoch


def test_fixed_lengths_end_a_length_after_their_stamp() -> None:
    assert Timeframe("1d").end_of(at(2024, 3, 10, 5)) == at(2024, 3, 11, 5)
    assert Timeframe("4h").end_of(at(2024, 1, 1, 2)) == at(2024, 1, 1, 6)
    assert Timeframe("5m").start_of(at(2024, 1, 1, 12, 7, 30)) == at(2024, 1, 1, 12, 5)


def test_nesting_knows_weeks_and_months() -> None:
    tf = Timeframe
    assert nested([tf("1m"), tf("1h"), tf("1d"), tf("1w")])
    assert nested([tf("1h"), tf("1d"), tf("1M"), tf("3M"), tf("12M")])
    assert not nested([tf("1d"), tf("1w"), tf("1M")])  # weeks do not split months
    assert not nested([tf("7d"), tf("1w")])  # same length, Thursday vs Monday boundaries
    assert not nested([tf("1M"), tf("2M"), tf("3M")])
    assert not nested([tf("5h"), tf("1M")])


# -- bars and signals --------------------------------------------------------------------------


def bar(timeframe: str, stamp: datetime) -> OHLCV:
    one = Decimal(1)
    return OHLCV(
        Exchange("x"), Symbol("GOOG"), Timeframe(timeframe), stamp, one, one, one, one, one
    )


def test_bar_end_and_the_signal_time_use_the_calendar() -> None:
    class Always(BarStrategy):
        name = "always"

    monthly = bar("1M", at(2013, 4, 30))
    strategy = Always({}, warmup_bars=0)

    signal = strategy.signal(monthly, SignalAction.ENTER_LONG, 1.0, {}, "test")

    assert bar_end(monthly) == at(2013, 5, 1)
    assert signal.timestamp == at(2013, 5, 1)  # decided when the month closed
    assert signal.meta["timeframe"] == "1M"
    assert bar_end(bar("1m", at(2024, 1, 1))) == at(2024, 1, 1, 0, 1)


def trade(moment: datetime, price: int) -> Trade:
    return Trade(
        exchange=Exchange("x"),
        symbol=Symbol("BTC_JPY"),
        side=Side.BUY,
        price=Decimal(price),
        size=Decimal(1),
        timestamp=moment,
    )


def test_monthly_bars_from_trades_with_a_flat_month_between() -> None:
    builder = BarBuilder(Exchange("x"), Symbol("BTC_JPY"), Timeframe("1M"))

    builder.add(trade(at(2024, 1, 15), 100))
    builder.add(trade(at(2024, 1, 31, 23), 110))
    update = builder.add(trade(at(2024, 3, 2), 120))

    assert update.count == 2
    january, february = update.bars()
    assert (january.timestamp, january.open, january.close) == (at(2024, 1, 1), 100, 110)
    assert (february.timestamp, february.volume, february.close) == (at(2024, 2, 1), 0, 110)
    assert builder.closed_until == at(2024, 3, 1)
    assert builder.tick(at(2024, 3, 31)).count == 0
    (march,) = builder.tick(at(2024, 4, 1)).bars()
    assert bar_end(march) == at(2024, 4, 1)
    run = builder.tick(at(2024, 7, 10))
    assert [b.timestamp for b in run.bars()] == [at(2024, 4, 1), at(2024, 5, 1), at(2024, 6, 1)]
    assert run.count == 3


def test_weekly_bars_from_trades_start_on_monday() -> None:
    builder = BarBuilder(Exchange("x"), Symbol("BTC_JPY"), Timeframe("1w"))

    builder.add(trade(at(2024, 1, 3), 100))  # a Wednesday
    (week,) = builder.add(trade(at(2024, 1, 8), 101)).bars()

    assert week.timestamp == at(2024, 1, 1)
    assert bar_end(week) == at(2024, 1, 8)


def test_resuming_after_a_stored_month() -> None:
    builder = BarBuilder(Exchange("x"), Symbol("GOOG"), Timeframe("1M"))

    builder.resume_after(bar("1M", at(2024, 2, 1)))

    assert builder.closed_until == at(2024, 3, 1)
    assert builder.is_late(trade(at(2024, 2, 29, 23), 1))
    assert not builder.is_late(trade(at(2024, 3, 1), 1))


# -- live configuration ------------------------------------------------------------------------


def test_live_timeframes_take_weeks_but_not_months(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OHLCV_TIMEFRAMES", "1h,1d,1w")
    monkeypatch.setenv("STRATEGY_TIMEFRAME", "1w")
    assert load_settings().OHLCV_TIMEFRAMES == ["1h", "1d", "1w"]

    monkeypatch.setenv("OHLCV_TIMEFRAMES", "1d,1M")
    monkeypatch.setenv("STRATEGY_TIMEFRAME", "1d")
    with pytest.raises(ConfigError, match=r"1M is calendar months, for bar files"):
        load_settings()


# -- symbols -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "good",
    [
        "GOOG",
        "EURUSD_1H",
        "BTC/USDT:USDT",
        "BRK.B",
        "7203.T",
        "BTCUSD_MONTHLY",
        "A" * 20,
        "ETH/BTC",
    ],
)
def test_symbols_as_files_and_ccxt_name_them(good: str) -> None:
    assert str(Symbol(good)) == good


@pytest.mark.parametrize(
    "bad", ["A" * 21, "MY DATA", "goog", "BTC--USD", "_X", "X_", "A..B", "A:B:C", "A/B/C", ""]
)
def test_symbols_refused(bad: str) -> None:
    with pytest.raises(InvalidValue, match="at most 20 characters"):
        Symbol(bad)


def test_symbols_without_a_quote_keep_their_meaning() -> None:
    assert not Symbol("EURUSD_1H").is_gmo_leverage
    assert not Symbol("GOOG").is_gmo_leverage
    assert Symbol("ETH_JPY").is_gmo_leverage
    assert base_and_quote("GOOG", "JPY") == ("GOOG", "JPY")
    assert base_and_quote("BTC/USDT", "JPY") == ("BTC", "USDT")
