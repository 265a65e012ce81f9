"""OHLCV bar files: GOOG round trips through CSV and Parquet, layouts found, bad files named."""

from __future__ import annotations

import gzip
import itertools
import re
import warnings
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trading_engine.adapters.marketdata.bar_files import (
    BarFileError,
    BarFileWarning,
    default_symbol,
    read_bar_file,
    read_bars,
)
from trading_engine.domain.bars import bar_end
from trading_engine.domain.models import OHLCV
from trading_engine.domain.values import Exchange, Symbol, Timeframe

HEADER = "timestamp,open,high,low,close,volume\n"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def goog() -> pd.DataFrame:
    test_data = pytest.importorskip("backtesting.test")
    return test_data.GOOG


def write(path: Path, text: str) -> Path:
    if path.name.lower().endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def read(path: Path, **kwargs: object) -> list[OHLCV]:
    return read_bar_file(path, exchange="test", symbol="BTC_JPY", **kwargs)  # type: ignore[arg-type]


# -- GOOG round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["GOOG.csv", "GOOG.csv.gz", "GOOG.parquet", "GOOG.pq"])
def test_goog_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if ".csv" in name:
        goog().to_csv(path)  # the DatetimeIndex becomes the unnamed first column
    else:
        goog().to_parquet(path)  # the DatetimeIndex is kept as the index

    bars = read_bar_file(path, exchange="nasdaq", symbol="GOOG")

    assert len(bars) == 2148
    first, last = bars[0], bars[-1]
    assert first == OHLCV(
        exchange=Exchange("nasdaq"),
        symbol=Symbol("GOOG"),
        timeframe=Timeframe("1d"),  # inferred: weekday gaps of 1 day outnumber weekends
        timestamp=datetime(2004, 8, 19, tzinfo=UTC),
        open=Decimal("100.00"),
        high=Decimal("104.06"),
        low=Decimal("95.96"),
        close=Decimal("100.34"),
        volume=Decimal(22351900),
    )
    assert last.timestamp == datetime(2013, 3, 1, tzinfo=UTC)
    assert (last.open, last.high, last.low, last.close, last.volume) == (
        Decimal("797.8"),
        Decimal("807.14"),
        Decimal("796.15"),
        Decimal("806.19"),
        Decimal(2175400),
    )
    # no float noise anywhere: every price has at most the 2 places GOOG is quoted in
    assert all(
        -getattr(bar, field).as_tuple().exponent <= 2
        for bar in bars
        for field in ("open", "high", "low", "close")
    )
    assert [bar.timestamp for bar in bars] == sorted(bar.timestamp for bar in bars)


def backtesting_data(name: str) -> pd.DataFrame:
    test_data = pytest.importorskip("backtesting.test")
    return getattr(test_data, name)


@pytest.mark.parametrize(
    ("dataset", "file_name", "symbol", "timeframe", "count", "first", "last"),
    [
        ("GOOG", "goog.csv", "GOOG", "1d", 2148, datetime(2004, 8, 19), datetime(2013, 3, 1)),
        (
            "EURUSD",
            "eurusd_hourly.csv.gz",
            "EURUSD_HOURLY",
            "1h",
            5000,
            datetime(2017, 4, 19, 9),
            datetime(2018, 2, 7, 15),
        ),
        (
            "BTCUSD",
            "btcusd_monthly.csv",
            "BTCUSD_MONTHLY",
            "1M",
            156,
            datetime(2012, 1, 31),
            datetime(2024, 12, 31),
        ),
    ],
)
def test_backtesting_py_datasets_written_by_to_csv(
    tmp_path: Path,
    dataset: str,
    file_name: str,
    symbol: str,
    timeframe: str,
    count: int,
    first: datetime,
    last: datetime,
) -> None:
    """backtesting.py's own samples as `df.to_csv()` writes them (the DatetimeIndex in an
    unnamed first column, capitalised columns), named in lower case: the symbol is the stem,
    the bar length is inferred (GOOG's weekend and holiday gaps, EURUSD's weekends, BTCUSD's
    month-end stamps 28 to 31 days apart)."""
    path = tmp_path / file_name
    backtesting_data(dataset).to_csv(path)

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        bars = read_bars([path], exchange="backtest_x")[symbol]

    assert len(bars) == count
    assert {bar.symbol for bar in bars} == {Symbol(symbol)}
    assert {bar.timeframe for bar in bars} == {Timeframe(timeframe)}
    assert (bars[0].timestamp, bars[-1].timestamp) == (
        first.replace(tzinfo=UTC),
        last.replace(tzinfo=UTC),
    )
    # every bar ends by the time the next one starts: signals are acted on at the next bar
    assert all(bar_end(a) <= b.timestamp for a, b in itertools.pairwise(bars))


def test_btcusd_month_end_bars_end_at_the_month_s_end(tmp_path: Path) -> None:
    path = tmp_path / "btcusd.csv"
    backtesting_data("BTCUSD").to_csv(path)

    with pytest.warns(BarFileWarning):
        bars = {bar.timestamp: bar for bar in read_bars([path], exchange="x")["BTCUSD"]}

    april = bars[datetime(2013, 4, 30, tzinfo=UTC)]
    assert bar_end(april) == datetime(2013, 5, 1, tzinfo=UTC)  # the bar holds April
    assert datetime(2013, 5, 31, tzinfo=UTC) in bars  # the next one, stamped at May's end
    february = bars[datetime(2012, 2, 29, tzinfo=UTC)]
    assert bar_end(february) == datetime(2012, 3, 1, tzinfo=UTC)


def test_btcusd_float_noise_is_rounded_and_counted(tmp_path: Path) -> None:
    """`to_csv` writes BTCUSD's volumes at full float precision: two of them carry float
    noise past the 8th place (397787.41249925003, 288372.04635443003)."""
    path = tmp_path / "btcusd.csv"
    backtesting_data("BTCUSD").to_csv(path)

    with pytest.warns(BarFileWarning) as caught:
        bars = read_bars([path], exchange="x")["BTCUSD"]

    (warning,) = caught
    assert isinstance(warning.message, BarFileWarning)
    assert (warning.message.rounded, warning.message.row, warning.message.column) == (
        2,
        43,
        "volume",
    )
    assert str(warning.message) == (
        f"{path}: 2 values had more than 8 decimal places and were rounded to 8 "
        "(first: data row 43, column volume)"
    )
    by_time = {bar.timestamp: bar for bar in bars}
    assert by_time[datetime(2015, 7, 31, tzinfo=UTC)].volume == Decimal("397787.41249925")
    assert by_time[datetime(2016, 1, 31, tzinfo=UTC)].volume == Decimal("288372.04635443")


def test_parquet_with_a_named_time_column_and_float32_prices(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "Date": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:01"]),
            "Open": np.array([100.34, 100.5], dtype=np.float32),
            "High": np.array([101.1, 101.2], dtype=np.float32),
            "Low": np.array([99.9, 100.0], dtype=np.float32),
            "Close": np.array([100.7, 100.6], dtype=np.float32),
            "Volume": [1.5, 0.25],
        }
    )
    path = tmp_path / "bars.parquet"
    frame.to_parquet(path, index=False)

    first, _ = read(path)

    assert first.open == Decimal("100.34")  # not 100.33999633789062
    assert first.high == Decimal("101.1")
    assert first.volume == Decimal("1.5")
    assert first.timeframe == Timeframe("1m")


def test_parquet_float_noise_beyond_8_places_is_rounded_with_a_warning(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"timestamp": [T0], "open": [0.1 + 0.2], "high": [1.0], "low": [0.1], "close": [0.5]}
    )
    path = tmp_path / "noise.parquet"
    frame.to_parquet(path)

    with pytest.warns(BarFileWarning) as caught:
        (bar,) = read(path, timeframe="1m")

    assert bar.open == Decimal("0.30000000")
    (warning,) = caught
    assert str(warning.message) == (
        f"{path}: 1 value had more than 8 decimal places and was rounded to 8 "
        "(first: data row 1, column open)"
    )


# -- layouts -----------------------------------------------------------------------------------


def test_column_names_in_any_case_and_order(tmp_path: Path) -> None:
    path = write(
        tmp_path / "b.csv",
        "VOLUME,Close,LOW,high,Open,DateTime\n"
        "3.5,101,99,102,100.00,2024-01-01T00:00:00\n"
        "0,100.5,100,101,101,2024-01-01T00:05:00\n",
    )

    first, second = read(path)

    assert (first.open, first.high, first.low, first.close, first.volume) == (
        Decimal("100.00"),
        Decimal(102),
        Decimal(99),
        Decimal(101),
        Decimal("3.5"),
    )
    assert str(first.open) == "100.00"  # the digits as written
    assert second.timestamp == datetime(2024, 1, 1, 0, 5, tzinfo=UTC)
    assert first.timeframe == Timeframe("5m")


@pytest.mark.parametrize(
    ("first_time", "second_time"),
    [
        ("1704067200", "1704067260"),  # epoch seconds
        ("1704067200000", "1704067260000"),  # epoch milliseconds
        ("1704067200.0", "1704067260.0"),
        ("2024-01-01 00:00:00", "2024-01-01 00:01:00"),  # naive: UTC
        ("2024-01-01T09:00:00+09:00", "2024-01-01T09:01:00+09:00"),  # converted to UTC
        ("2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"),
    ],
)
def test_time_formats(tmp_path: Path, first_time: str, second_time: str) -> None:
    path = write(
        tmp_path / "b.csv",
        f"{HEADER}{first_time},1,2,1,2,0\n{second_time},2,3,1,3,0\n",
    )

    first, second = read(path)

    assert first.timestamp == T0
    assert second.timestamp == T0 + timedelta(minutes=1)
    assert first.timestamp.utcoffset() == timedelta(0)
    assert first.timeframe == Timeframe("1m")


def test_parquet_epoch_milliseconds(tmp_path: Path) -> None:
    ms = 1_704_067_200_000
    frame = pd.DataFrame(
        {"open_time": [ms, ms + 60_000], "open": [1, 2], "high": [2, 3], "low": [1, 1]}
        | {"close": [2, 3], "volume": [0, 0]}
    )
    path = tmp_path / "b.pq"
    frame.to_parquet(path)

    assert [bar.timestamp for bar in read(path)] == [T0, T0 + timedelta(minutes=1)]


def test_aware_parquet_index_is_converted_to_utc(tmp_path: Path) -> None:
    index = pd.date_range("2024-01-01 09:00", periods=3, freq="h", tz="Asia/Tokyo")
    frame = pd.DataFrame(
        {"open": [1.0] * 3, "high": [1.0] * 3, "low": [1.0] * 3, "close": [1.0] * 3},
        index=index,
    )
    path = tmp_path / "b.parquet"
    frame.to_parquet(path)

    bars = read(path)

    assert [bar.timestamp for bar in bars] == [T0 + timedelta(hours=h) for h in range(3)]
    assert bars[0].timeframe == Timeframe("1h")


def test_extra_columns_are_ignored(tmp_path: Path) -> None:
    """A yfinance download: `Adj Close` beside `Close`, dividends and splits."""
    path = write(
        tmp_path / "spy.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume,Dividends,Stock Splits\n"
        "2024-01-02,472.16,473.67,470.49,472.65,466.2,123623700,0.0,0.0\n"
        "2024-01-03,470.43,471.19,468.17,468.79,462.39,103585900,0.0,0.0\n",
    )

    first, second = read_bars([path], exchange="nyse")["SPY"]

    assert (first.close, first.volume) == (Decimal("472.65"), Decimal(123623700))
    assert second.timeframe == Timeframe("1d")


def test_more_than_8_decimals_are_rounded_half_to_even(tmp_path: Path) -> None:
    path = write(
        tmp_path / "b.csv",
        f"{HEADER}2024-01-01,1.000000005,1.000000015,1,1.0000000050,0.1234567891\n"
        "2024-01-02,2,2.5,1.500000000,2,0.000000001\n",
    )

    with pytest.warns(BarFileWarning) as caught:
        first, second = read(path)

    assert (first.open, first.high, first.low, first.close, first.volume) == (
        Decimal("1.00000000"),  # half to even: ...0|5 -> ...0
        Decimal("1.00000002"),  # ...1|5 -> ...2
        Decimal(1),
        Decimal("1.00000000"),
        Decimal("0.12345679"),
    )
    assert second.low == Decimal("1.5")  # exact at 8 places: not counted as rounded
    assert second.volume == 0  # a volume may round to 0
    assert str(caught[0].message) == (
        f"{path}: 5 values had more than 8 decimal places and were rounded to 8 "
        "(first: data row 1, column open)"
    )


def test_a_price_that_rounds_to_zero_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", f"{HEADER}2024-01-01,1,1,0.000000001,1,0\n")

    with pytest.raises(BarFileError) as caught:
        read(path, timeframe="1d")

    assert str(caught.value) == (
        f"{path}, data row 1: bad low 0.000000001: must be greater than zero, and rounds to 0 "
        "at 8 decimal places"
    )
    assert caught.value.row == 1


def test_more_than_12_integer_digits_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", f"{HEADER}2024-01-01,1,1234567890123,1,1,0\n")

    with pytest.raises(BarFileError, match=r"data row 1: bad high 1234567890123: more than 12"):
        read(path, timeframe="1d")


def test_missing_close_names_the_columns_found(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", "Date,Open,High,Low,Adj Close\n2024-01-01,1,1,1,1\n")

    with pytest.raises(BarFileError) as caught:
        read(path)

    assert str(caught.value) == (
        f"{path}: missing column 'close'; found columns Date, Open, High, Low, Adj Close"
    )


def test_a_bad_time_names_its_column(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", "Date,open,high,low,close\n2024-01-01,1,1,1,1\nsoon,1,1,1,1\n")
    unnamed = write(tmp_path / "c.csv", ",open,high,low,close\n2024-01-01,1,1,1,1\nsoon,1,1,1,1\n")

    with pytest.raises(BarFileError, match=r"data row 2: bad time 'soon' in column Date: "):
        read(path)
    with pytest.raises(BarFileError, match=r"bad time 'soon' in the unnamed first column"):
        read(unnamed)


def test_missing_volume_is_zero(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", "time,open,high,low,close\n2024-01-01,1,2,1,2\n")

    (bar,) = read(path, timeframe="1d")

    assert bar.volume == Decimal(0)


def test_gzipped_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv.gz", f"{HEADER}1704067200,1.5,2,1,2,7\n1704067260,2,3,1,3,0\n")

    first, _ = read(path)

    assert first.open == Decimal("1.5")
    assert first.volume == Decimal(7)


def test_rows_are_sorted_by_time(tmp_path: Path) -> None:
    path = write(
        tmp_path / "b.csv",
        f"{HEADER}2024-01-01 00:02,3,3,3,3,0\n2024-01-01 00:00,1,1,1,1,0\n"
        "2024-01-01 00:01,2,2,2,2,0\n",
    )

    bars = read(path)

    assert [bar.open for bar in bars] == [Decimal(1), Decimal(2), Decimal(3)]
    assert bars[0].timeframe == Timeframe("1m")


@pytest.mark.parametrize(
    ("gap", "expected"),
    [
        (timedelta(seconds=1), "1s"),
        (timedelta(minutes=1), "1m"),
        (timedelta(minutes=15), "15m"),
        (timedelta(hours=4), "4h"),
        (timedelta(days=1), "1d"),
        (timedelta(seconds=90), "90s"),
    ],
)
def test_timeframe_is_the_most_common_gap(tmp_path: Path, gap: timedelta, expected: str) -> None:
    times = [T0 + gap * i for i in range(10)]
    del times[4]  # a missing bar leaves one gap twice as long
    rows = "".join(f"{moment.isoformat()},1,1,1,1,0\n" for moment in times)
    path = write(tmp_path / "b.csv", HEADER + rows)

    bars = read(path)

    assert {bar.timeframe for bar in bars} == {Timeframe(expected)}


def test_a_given_timeframe_is_used_as_is(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", f"{HEADER}1704067200,1,1,1,1,0\n1704067500,1,1,1,1,0\n")

    assert {bar.timeframe for bar in read(path, timeframe="5m")} == {Timeframe("5m")}
    # a shorter bar than the spacing is fine: the bars between are missing
    assert {bar.timeframe for bar in read(path, timeframe="1m")} == {Timeframe("1m")}


def test_a_given_timeframe_longer_than_the_spacing_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", f"{HEADER}1704067200,1,1,1,1,0\n1704067260,1,1,1,1,0\n")

    with pytest.raises(BarFileError) as caught:
        read(path, timeframe="5m")

    assert str(caught.value) == (
        f"{path}: data rows 1 (2024-01-01T00:00:00+00:00) and 2 (2024-01-01T00:01:00+00:00) "
        "are closer together than the timeframe 5m (given): the bar of row 1 would end at "
        "2024-01-01T00:05:00+00:00, after the next one starts; pass a shorter --timeframe, "
        "or remove the extra bar"
    )


def test_a_12_hour_gap_in_daily_bars_is_refused_naming_both_rows(tmp_path: Path) -> None:
    days = ["2024-01-01", "2024-01-02", "2024-01-02T12:00", "2024-01-03", "2024-01-04"]
    days += ["2024-01-05", "2024-01-08", "2024-01-09"]
    path = write(tmp_path / "b.csv", HEADER + "".join(f"{d},1,1,1,1,0\n" for d in days))

    with pytest.raises(
        BarFileError, match=r"data rows 2 \(2024-01-02T00:00:00\+00:00\) and 3 "
    ) as caught:
        read(path)

    assert "timeframe 1d (inferred from the bars' spacing)" in str(caught.value)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"], "1M"),  # month starts
        (["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30"], "1M"),  # month ends
        (["2024-01-02", "2024-02-01", "2024-03-01", "2024-04-01"], "1M"),  # first trading days
        (["2024-01-31", "2024-02-29", "2024-03-28", "2024-04-30"], "1M"),  # last trading days
        (["2023-03-31", "2023-06-30", "2023-09-29", "2023-12-29", "2024-03-28"], "3M"),
        (["2021-12-31", "2022-12-30", "2023-12-29", "2024-12-31"], "12M"),
        (["2024-01-07", "2024-01-14", "2024-01-21", "2024-02-04"], "1w"),  # Sundays, one missing
        (["2024-01-01", "2024-01-15", "2024-01-29", "2024-02-12"], "2w"),
        (["2024-01-01", "2024-01-31", "2024-03-01", "2024-03-31", "2024-04-30"], "30d"),
    ],
)
def test_weeks_and_calendar_months_are_inferred(
    tmp_path: Path, days: list[str], expected: str
) -> None:
    path = write(tmp_path / "b.csv", HEADER + "".join(f"{d},1,1,1,1,0\n" for d in days))

    bars = read(path)

    assert {bar.timeframe for bar in bars} == {Timeframe(expected)}
    assert all(bar_end(a) <= b.timestamp for a, b in itertools.pairwise(bars))


def test_two_bars_in_one_month_are_refused_on_monthly_bars(tmp_path: Path) -> None:
    days = ["2024-01-31", "2024-02-29", "2024-03-01", "2024-03-31", "2024-04-30"]
    path = write(tmp_path / "b.csv", HEADER + "".join(f"{d},1,1,1,1,0\n" for d in days))

    with pytest.raises(BarFileError, match=r"data rows 3 .* and 4 .* timeframe 1M \(inferred"):
        read(path)


def test_one_bar_needs_a_timeframe(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", f"{HEADER}1704067200,1,1,1,1,0\n")

    with pytest.raises(BarFileError) as caught:
        read(path)

    assert str(caught.value) == (
        f"{path}: one bar only: the bar length cannot be inferred; pass --timeframe (e.g. 1d)"
    )
    (bar,) = read(path, timeframe="1M")
    assert bar_end(bar) == datetime(2024, 2, 1, tzinfo=UTC)


def test_a_gap_no_timeframe_expresses_names_the_option(tmp_path: Path) -> None:
    times = ["2024-01-01T00:00:00", "2024-01-01T00:00:00.500", "2024-01-01T00:00:01"]
    path = write(tmp_path / "b.csv", HEADER + "".join(f"{t},1,1,1,1,0\n" for t in times))

    with pytest.raises(
        BarFileError, match=r"most common gap between bars is 0:00:00\.5.*--timeframe$"
    ):
        read(path)


# -- symbols from file names -------------------------------------------------------------------


def test_read_bars_takes_symbols_from_file_names(tmp_path: Path) -> None:
    rows = f"{HEADER}1704067200,1,1,1,1,0\n1704067260,1,1,1,1,0\n"
    btc = write(tmp_path / "BTC_JPY.csv", rows)
    eth = write(tmp_path / "eth_jpy.csv.gz", rows)
    goog = write(tmp_path / "goog.csv", rows)
    fx = write(tmp_path / "eurusd_1h.CSV.GZ", rows)
    dotted = write(tmp_path / "7203.t.csv", rows)

    bars = read_bars([btc, eth, goog, fx, dotted], exchange="gmo")

    assert list(bars) == ["BTC_JPY", "ETH_JPY", "GOOG", "EURUSD_1H", "7203.T"]
    assert bars["ETH_JPY"][0].symbol == Symbol("ETH_JPY")
    assert bars["GOOG"][0].symbol == Symbol("GOOG")
    assert bars["BTC_JPY"][0].exchange == Exchange("gmo")

    named = read_bars([btc], exchange="gmo", symbols=["XRP"])
    assert named["XRP"][1].symbol == Symbol("XRP")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("goog.csv", "GOOG"),
        ("eurusd_1h.csv.gz", "EURUSD_1H"),
        ("BTC_JPY.parquet", "BTC_JPY"),
        ("data.PQ", "DATA"),
        ("ETH_JPY.1m.csv.gz", "ETH_JPY.1M"),
        ("my-data.2024.csv", "MY-DATA.2024"),
    ],
)
def test_default_symbol_is_the_stem_in_upper_case(name: str, expected: str) -> None:
    assert default_symbol(Path("/data") / name) == expected


@pytest.mark.parametrize(
    "name", ["my data.csv", "btc--usd.csv", "a_very_long_file_name_indeed.csv", "ünïcode.csv"]
)
def test_a_file_name_that_is_no_symbol_says_to_use_the_option(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, f"{HEADER}1704067200,1,1,1,1,0\n1704067260,1,1,1,1,0\n")
    stem = name.removesuffix(".csv").upper()

    with pytest.raises(BarFileError) as caught:
        read_bars([path], exchange="gmo")

    message = str(caught.value)
    assert message.startswith(f"{path}: symbol {stem!r} taken from the file name is not valid: ")
    assert message.endswith("; name it with --symbol")
    assert read_bars([path], exchange="gmo", symbols=["BTC"])["BTC"][0].symbol == Symbol("BTC")


def test_a_bad_given_symbol_names_the_option(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", f"{HEADER}1704067200,1,1,1,1,0\n1704067260,1,1,1,1,0\n")

    with pytest.raises(BarFileError, match=r"symbol 'btc usd' given with --symbol is not valid"):
        read_bars([path], exchange="gmo", symbols=["btc usd"])


def test_a_missing_column_is_reported_before_the_file_name(tmp_path: Path) -> None:
    path = write(tmp_path / "my data.csv", "timestamp,open,high,low\n1704067200,1,1,1\n")

    with pytest.raises(BarFileError) as caught:
        read_bars([path], exchange="gmo")

    assert str(caught.value) == (
        f"{path}: missing column 'close'; found columns timestamp, open, high, low"
    )


def test_a_bad_row_is_reported_before_the_file_name(tmp_path: Path) -> None:
    path = write(tmp_path / "my data.csv", f"{HEADER}1704067200,1,1,1,x,0\n")

    with pytest.raises(BarFileError, match=r"data row 1: bad close 'x': not a number"):
        read_bars([path], exchange="gmo")


def test_read_bars_refuses_two_files_for_one_symbol(tmp_path: Path) -> None:
    rows = f"{HEADER}1704067200,1,1,1,1,0\n1704067260,1,1,1,1,0\n"
    one = write(tmp_path / "BTC.csv", rows)
    (tmp_path / "other").mkdir()
    two = write(tmp_path / "other" / "btc.csv.gz", rows)

    with pytest.raises(BarFileError, match=r"a second file for symbol BTC; .* with --symbol"):
        read_bars([one, two], exchange="gmo")


# -- bad files ---------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BarFileError, match=r"nope\.csv: no such file"):
        read(tmp_path / "nope.csv")


def test_unknown_suffix(tmp_path: Path) -> None:
    path = write(tmp_path / "bars.txt", HEADER)

    with pytest.raises(BarFileError, match=r"bars\.txt: unknown file type"):
        read(path)


@pytest.mark.parametrize("missing", ["open", "high", "low", "close"])
def test_missing_price_column_is_named(tmp_path: Path, missing: str) -> None:
    columns = [name for name in ("timestamp", "open", "high", "low", "close") if name != missing]
    path = write(tmp_path / "b.csv", ",".join(columns) + "\n" + ",".join(["1"] * 4) + "\n")

    with pytest.raises(BarFileError, match=f"missing column '{missing}'") as caught:
        read(path, timeframe="1m")
    assert str(path) in str(caught.value)


def test_no_time_column(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", "when,open,high,low,close\nx,1,1,1,1\n")

    with pytest.raises(BarFileError, match=r"no time column.*found columns when, open"):
        read(path)


def test_row_numbers_in_the_first_column_are_not_times(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", ",open,high,low,close\n0,1,1,1,1\n1,1,1,1,1\n")

    with pytest.raises(BarFileError, match="row numbers"):
        read(path)


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ("2024-01-01 00:02,1,1,x,1,0", r"data row 3: bad low 'x': not a number"),
        ("2024-01-01 00:02,1,1,1,,0", r"data row 3: bad close '': not a number"),
        ("2024-01-01 00:02,1,1,1,1,-2", r"data row 3: bad volume -2: must not be negative"),
        ("2024-01-01 00:02,0,1,0,1,0", r"data row 3: bad open 0: must be greater than zero"),
        ("01/03/2024 00:02,1,1,1,1,0", r"data row 3: bad time '01/03/2024 00:02'"),
        ("2024-01-01 00:02,1,1,2,1,0", r"data row 3: high 1 is below low 2"),
        ("2024-01-01 00:02,5,4,1,2,0", r"data row 3: open 5 is outside \[low 1, high 4\]"),
        ("2024-01-01 00:02,2,4,2,1,0", r"data row 3: close 1 is outside \[low 2, high 4\]"),
    ],
)
def test_bad_row_is_named(tmp_path: Path, bad_row: str, message: str) -> None:
    path = write(
        tmp_path / "b.csv",
        f"{HEADER}2024-01-01 00:00,1,1,1,1,0\n2024-01-01 00:01,1,1,1,1,0\n{bad_row}\n"
        "2024-01-01 00:03,1,1,1,1,0\n",
    )

    with pytest.raises(BarFileError, match=message) as caught:
        read(path)
    assert caught.value.row == 3
    assert caught.value.path == str(path)


def test_mixed_epoch_units_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", f"{HEADER}1704067200,1,1,1,1,0\n1704067260000,1,1,1,1,0\n")

    with pytest.raises(BarFileError, match=r"data row 2: epoch time .* looks like ms"):
        read(path)


def test_duplicate_timestamp_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path / "b.csv",
        f"{HEADER}2024-01-01 00:01,1,1,1,1,0\n2024-01-01 00:00,1,1,1,1,0\n"
        "2024-01-01T00:01:00Z,1,1,1,1,0\n",
    )

    with pytest.raises(
        BarFileError, match=r"duplicate time 2024-01-01T00:01:00\+00:00 \(data rows 1 and 3\)"
    ):
        read(path)


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    with pytest.raises(BarFileError, match="empty file"):
        read(write(tmp_path / "empty.csv", ""))
    with pytest.raises(BarFileError, match="no bars"):
        read(write(tmp_path / "header.csv", HEADER), timeframe="1m")


def test_corrupt_files(tmp_path: Path) -> None:
    gz = tmp_path / "b.csv.gz"
    gz.write_bytes(gzip.compress((HEADER + "1704067200,1,1,1,1,0\n" * 100).encode())[:40])
    with pytest.raises(BarFileError, match="unreadable"):
        read(gz)

    pq = tmp_path / "b.parquet"
    pq.write_bytes(b"not parquet at all")
    with pytest.raises(BarFileError, match="unreadable"):
        read(pq)


def test_error_is_a_value_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", "open,high,low,close\n1,1,1,1\n")

    with pytest.raises(ValueError, match=re.escape(str(path))):
        read(path)


def test_bars_read_are_what_the_checking_constructor_makes(tmp_path: Path) -> None:
    """The reader builds bars without a second check (`OHLCV.checked`): every bar it returns
    passes the full one unchanged, on data it did not make (backtesting.py's, and a copy
    with float noise that gets rounded)."""
    from backtesting.test import BTCUSD, EURUSD

    EURUSD.to_csv(tmp_path / "eurusd.csv")
    BTCUSD.to_csv(tmp_path / "btcusd.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BTCUSD's two rounded volumes
        bars = [
            *read_bar_file(tmp_path / "eurusd.csv", exchange="sim", symbol="EURUSD"),
            *read_bar_file(tmp_path / "btcusd.csv", exchange="sim", symbol="BTCUSD"),
        ]
    assert len(bars) == 5000 + 156
    for bar in bars:
        fields = (bar.exchange, bar.symbol, bar.timeframe, bar.timestamp, bar.open, bar.high)
        assert OHLCV(*fields, bar.low, bar.close, bar.volume) == bar
