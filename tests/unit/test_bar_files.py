"""OHLCV bar files: GOOG round trips through CSV and Parquet, layouts found, bad files named."""

from __future__ import annotations

import gzip
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adapters.marketdata.bar_files import BarFileError, read_bar_file, read_bars
from domain.models import OHLCV
from domain.values import Exchange, Symbol, Timeframe

HEADER = "timestamp,open,high,low,close,volume\n"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def goog() -> pd.DataFrame:
    test_data = pytest.importorskip("backtesting.test")
    return test_data.GOOG


def write(path: Path, text: str) -> Path:
    if path.name.endswith(".gz"):
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


def test_parquet_float_noise_beyond_8_places_is_refused(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"timestamp": [T0], "open": [0.1 + 0.2], "high": [1.0], "low": [0.1], "close": [0.5]}
    )
    path = tmp_path / "noise.parquet"
    frame.to_parquet(path)

    with pytest.raises(BarFileError, match=r"data row 1: bad open 0\.30000000000000004"):
        read(path, timeframe="1m")


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
    path = write(tmp_path / "b.csv", f"{HEADER}1704067200,1,1,1,1,0\n1704067260,1,1,1,1,0\n")

    assert {bar.timeframe for bar in read(path, timeframe="5m")} == {Timeframe("5m")}


def test_monthly_gaps_are_not_inferred(tmp_path: Path) -> None:
    path = write(
        tmp_path / "b.csv",
        f"{HEADER}2024-01-01,1,1,1,1,0\n2024-02-01,1,1,1,1,0\n2024-03-01,1,1,1,1,0\n",
    )

    with pytest.raises(BarFileError, match=r"most common gap between bars is 29 days.*timeframe="):
        read(path)


def test_one_bar_needs_a_timeframe(tmp_path: Path) -> None:
    path = write(tmp_path / "b.csv", f"{HEADER}1704067200,1,1,1,1,0\n")

    with pytest.raises(BarFileError, match="cannot infer the timeframe"):
        read(path)


def test_read_bars_takes_symbols_from_file_names(tmp_path: Path) -> None:
    rows = f"{HEADER}1704067200,1,1,1,1,0\n1704067260,1,1,1,1,0\n"
    btc = write(tmp_path / "BTC_JPY.csv", rows)
    eth = write(tmp_path / "ETH_JPY.1m.csv.gz", rows)

    bars = read_bars([btc, eth], exchange="gmo")

    assert set(bars) == {"BTC_JPY", "ETH_JPY"}
    assert bars["ETH_JPY"][0].symbol == Symbol("ETH_JPY")
    assert bars["BTC_JPY"][0].exchange == Exchange("gmo")

    named = read_bars([btc], exchange="gmo", symbols=["XRP"])
    assert named["XRP"][1].symbol == Symbol("XRP")


def test_read_bars_refuses_two_files_for_one_symbol(tmp_path: Path) -> None:
    rows = f"{HEADER}1704067200,1,1,1,1,0\n1704067260,1,1,1,1,0\n"
    one = write(tmp_path / "BTC.csv", rows)
    (tmp_path / "other").mkdir()
    two = write(tmp_path / "other" / "BTC.csv", rows)

    with pytest.raises(BarFileError, match="a second file for symbol BTC"):
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
