"""OHLCV bar files for backtests: CSV (plain or `.csv.gz`) or Parquet, read into `OHLCV` bars.

The layout is found, not configured:

* the time is a column named `timestamp`, `datetime`, `open_time`, `date` or `time` (any
  case), or else the file's index: a Parquet index (a DatetimeIndex written by `to_parquet`)
  or a CSV's unnamed first column (what `df.to_csv()` writes for a DatetimeIndex);
* `open`, `high`, `low`, `close` and (optional, else 0) `volume` columns, any case.

Times may be ISO strings, dates, datetimes or epoch numbers; an epoch's unit is told by its
magnitude (seconds below 1e11, then milliseconds, microseconds, nanoseconds). Naive times
are UTC, aware ones are converted to UTC.

Prices keep the digits written: CSV cells are read as text (`100.34` stays `Decimal("100.34")`)
and Parquet floats go through their shortest repr, so `100.34` never becomes
`100.3400000000000034106...`. A value that still needs more than the domain's 8 decimal
places (float noise such as `0.30000000000000004`) is refused, not rounded.

The whole file is checked before anything is returned: a bad file raises `BarFileError`
naming the file, the data row (1-based, in file order) where there is one, and the reason.
Bars come back sorted by time; two bars at the same time are an error.
"""

from __future__ import annotations

import math
import os
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd

from domain.errors import InvalidValue
from domain.models import OHLCV
from domain.values import Exchange, Symbol, Timeframe

PathLike = str | os.PathLike[str]

PRICE_COLUMNS = ("open", "high", "low", "close")
# Preferred first: ccxt-style exports carry both `timestamp` (epoch ms) and `datetime` (ISO).
TIME_COLUMNS = ("timestamp", "datetime", "open_time", "date", "time")
SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
# Inference refuses gaps longer than a week: monthly bars are 28 to 31 days apart, and no
# fixed Timeframe describes them.
MAX_INFERRED_SECONDS = 7 * 86_400

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Epoch units by magnitude: the first whose bound exceeds |value| (1e11 s is the year 5138).
_EPOCH_UNITS = ((1e11, "s", 1), (1e14, "ms", 10**3), (1e17, "us", 10**6), (math.inf, "ns", 10**9))
_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
_INDEX = object()  # the key of the index / unnamed first column among the candidates


class BarFileError(ValueError):
    """A bar file that cannot be read: says which file, which data row if any, and why."""

    def __init__(self, path: PathLike, reason: str, row: int | None = None) -> None:
        self.path = os.fspath(path)
        self.row = row
        self.reason = reason
        where = f", data row {row}" if row is not None else ""
        super().__init__(f"{self.path}{where}: {reason}")


def read_bar_file(
    path: PathLike,
    *,
    exchange: str | Exchange,
    symbol: str | Symbol,
    timeframe: str | Timeframe | None = None,
) -> list[OHLCV]:
    """All bars of one file, sorted by time. Without `timeframe`, it is inferred from the
    most common gap between consecutive bars (e.g. 60 s → `1m`, 1 day → `1d`)."""
    venue = exchange if isinstance(exchange, Exchange) else Exchange(exchange)
    instrument = symbol if isinstance(symbol, Symbol) else Symbol(symbol)
    given = None if timeframe is None else _timeframe_of(timeframe)
    source = Path(path)
    frame, index = _load(source)
    rows = _rows(source, frame, index)
    if not rows:
        raise BarFileError(source, "no bars in the file")
    rows.sort(key=lambda row: row[1])  # stable: equal times keep file order for the message
    for (row_a, time_a, *_), (row_b, time_b, *_) in pairwise(rows):
        if time_a == time_b:
            reason = f"duplicate time {time_a.isoformat()} (data rows {row_a} and {row_b})"
            raise BarFileError(source, reason)
    bar_length = given or _infer_timeframe(source, [row[1] for row in rows])
    bars = []
    for row, moment, open_, high, low, close, volume in rows:
        try:
            bars.append(
                OHLCV(venue, instrument, bar_length, moment, open_, high, low, close, volume)
            )
        except InvalidValue as error:  # e.g. float noise: more than 8 decimal places
            reason = f"bad {error.field} {error.value}: {error.reason}"
            raise BarFileError(source, reason, row) from None
    return bars


def read_bars(
    paths: Sequence[PathLike],
    *,
    exchange: str | Exchange,
    symbols: Sequence[str] | None = None,
    timeframe: str | Timeframe | None = None,
) -> dict[str, list[OHLCV]]:
    """One file per symbol. Without `symbols`, a file's symbol is its name up to the first
    `.`: `BTC_JPY.csv.gz` → `BTC_JPY`, `GOOG.parquet` → `GOOG`."""
    if isinstance(paths, str | os.PathLike):
        raise TypeError("paths must be a sequence of paths, not a single path")
    if symbols is not None and len(symbols) != len(paths):
        raise ValueError(f"{len(paths)} paths but {len(symbols)} symbols")
    result: dict[str, list[OHLCV]] = {}
    for i, path in enumerate(paths):
        name = symbols[i] if symbols is not None else Path(path).name.split(".", 1)[0]
        try:
            symbol = Symbol(name)
        except InvalidValue as error:
            source = "given" if symbols is not None else "taken from the file name"
            raise BarFileError(path, f"symbol {name!r} ({source}): {error.reason}") from None
        if symbol.value in result:
            raise BarFileError(path, f"a second file for symbol {symbol.value}")
        result[symbol.value] = read_bar_file(
            path, exchange=exchange, symbol=symbol, timeframe=timeframe
        )
    return result


# -- loading -----------------------------------------------------------------------------------


def _load(path: Path) -> tuple[pd.DataFrame, pd.Series | None]:
    """The file's columns, and its index (or CSV's unnamed first column) if it has one."""
    name = path.name.lower()
    kind = next((suffix for suffix in SUFFIXES if name.endswith(suffix)), None)
    if kind is None:
        raise BarFileError(path, f"unknown file type: expected one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise BarFileError(path, "no such file")
    try:
        if kind in (".csv", ".csv.gz"):
            return _load_csv(path, compressed=kind == ".csv.gz")
        return _load_parquet(path)
    except pd.errors.EmptyDataError:
        raise BarFileError(path, "empty file") from None
    except (OSError, ValueError, EOFError, zlib.error, UnicodeDecodeError) as error:
        if isinstance(error, BarFileError):
            raise
        raise BarFileError(path, f"unreadable: {error}") from error


def _load_csv(path: Path, *, compressed: bool) -> tuple[pd.DataFrame, pd.Series | None]:
    # Everything as text: prices keep the digits written, times are parsed by us.
    frame = pd.read_csv(
        path,
        dtype=str,
        na_filter=False,
        encoding="utf-8-sig",  # a byte-order mark is not part of the first header
        compression="gzip" if compressed else None,
    )
    if not isinstance(frame.index, pd.RangeIndex):
        # The header is one cell short of the rows: pandas took the first column as index.
        frame = frame.reset_index(names="Unnamed: 0")
    frame.columns = [str(column).strip() for column in frame.columns]
    if len(frame.columns) and frame.columns[0] == "Unnamed: 0":  # header `,Open,High,...`
        index = frame.iloc[:, 0]
        _refuse_row_numbers(path, index)
        return frame.iloc[:, 1:], index
    return frame, None


def _load_parquet(path: Path) -> tuple[pd.DataFrame, pd.Series | None]:
    frame = pd.read_parquet(path)
    frame.columns = [str(column).strip() for column in frame.columns]
    if isinstance(frame.index, pd.RangeIndex):
        return frame, None
    if isinstance(frame.index, pd.MultiIndex):
        raise BarFileError(path, "a multi-level index is not supported")
    index = frame.index.to_series(index=pd.RangeIndex(len(frame)))
    index.name = None if frame.index.name is None else str(frame.index.name).strip()
    return frame.reset_index(drop=True), index


def _refuse_row_numbers(path: Path, column: pd.Series) -> None:
    """`df.reset_index().to_csv()` leaves 0, 1, 2, ... in the unnamed first column."""
    if len(column) > 1 and list(column) == [str(i) for i in range(len(column))]:
        raise BarFileError(path, "the unnamed first column holds row numbers 0, 1, 2, ..., no time")


def _find(path: Path, frame: pd.DataFrame, wanted: str) -> str | None:
    matches = [column for column in frame.columns if column.lower() == wanted]
    if len(matches) > 1:
        raise BarFileError(path, f"several {wanted} columns: {', '.join(matches)}")
    return matches[0] if matches else None


def _time_column(path: Path, frame: pd.DataFrame, index: pd.Series | None) -> pd.Series:
    found = {wanted: _find(path, frame, wanted) for wanted in TIME_COLUMNS}
    index_name = None if index is None or index.name is None else index.name.lower()
    if index_name in found and found[index_name] is None:
        found[index_name] = _INDEX  # a Parquet index named e.g. `Date`
    if found["date"] and found["time"] and not any(found[name] for name in TIME_COLUMNS[:3]):
        raise BarFileError(path, "separate date and time columns are not supported")
    for wanted in TIME_COLUMNS:
        column = found[wanted]
        if column is _INDEX:
            assert index is not None
            return index
        if column is not None:
            return frame[column]
    if index is not None:
        return index
    names = ", ".join(frame.columns) or "none"
    raise BarFileError(
        path,
        "no time column: expected one named timestamp, datetime, open_time, date or time "
        f"(any case), or a time index / unnamed first column; found columns {names}",
    )


# -- rows --------------------------------------------------------------------------------------

_Row = tuple[int, datetime, Decimal, Decimal, Decimal, Decimal, Decimal]


def _rows(path: Path, frame: pd.DataFrame, index: pd.Series | None) -> list[_Row]:
    times = _times(path, _time_column(path, frame, index))
    columns: dict[str, list[object]] = {}
    for name in (*PRICE_COLUMNS, "volume"):
        column = _find(path, frame, name)
        if column is None:
            if name == "volume":
                continue
            found = ", ".join(frame.columns) or "none"
            raise BarFileError(path, f"missing column {name!r}; found columns {found}")
        columns[name] = list(frame[column].to_numpy())
    zero = Decimal(0)
    volumes = columns.get("volume")
    rows: list[_Row] = []
    for i, moment in enumerate(times):
        row = i + 1
        open_, high, low, close = (
            _price(path, row, name, columns[name][i]) for name in PRICE_COLUMNS
        )
        volume = zero if volumes is None else _price(path, row, "volume", volumes[i], zero_ok=True)
        if high < low:
            raise BarFileError(path, f"high {high} is below low {low}", row)
        for name, value in (("open", open_), ("close", close)):
            if not low <= value <= high:
                raise BarFileError(path, f"{name} {value} is outside [low {low}, high {high}]", row)
        rows.append((row, moment, open_, high, low, close, volume))
    return rows


def _price(path: Path, row: int, field: str, value: object, *, zero_ok: bool = False) -> Decimal:
    text = _number_text(value)
    try:
        number = Decimal(text) if text is not None else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise BarFileError(path, f"bad {field} {value!r}: not a number", row)
    if number < 0 or (number == 0 and not zero_ok):
        reason = "must not be negative" if zero_ok else "must be greater than zero"
        raise BarFileError(path, f"bad {field} {text}: {reason}", row)
    # precision and size (DECIMAL(20,8)) are checked where the OHLCV is built
    return number


def _number_text(value: object) -> str | None:
    """The digits of a cell: text as written, a float's shortest repr, an int's digits."""
    if isinstance(value, str):
        text = value.strip()
        return text if _NUMBER.fullmatch(text) else None
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer | Decimal):
        return str(value)
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return None
        if isinstance(value, float):  # Python and float64: repr is the shortest round trip
            return repr(float(value))
        # shortest repr for the value's own width: float32 100.34 is "100.34", not noise
        return np.format_float_positional(value, unique=True, trim="-")
    return None


# -- times -------------------------------------------------------------------------------------


def _times(path: Path, column: pd.Series) -> list[datetime]:
    if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(column):
        stamps = pd.to_datetime(column, utc=True)  # naive: taken as UTC; aware: converted
        for i, stamp in enumerate(stamps):
            if pd.isna(stamp):
                raise BarFileError(path, "missing time", i + 1)
        return [stamp.to_pydatetime() for stamp in stamps]
    times: list[datetime] = []
    epoch_unit: tuple[str, int] | None = None
    for i, value in enumerate(column.to_numpy()):
        row = i + 1
        moment, unit = _moment(path, row, value)
        if unit is not None:
            if epoch_unit is None:
                epoch_unit = unit
            elif unit != epoch_unit:
                reason = (
                    f"epoch time {value!r} looks like {unit[0]} but earlier rows are in "
                    f"{epoch_unit[0]}"
                )
                raise BarFileError(path, reason, row)
        times.append(moment)
    return times


def _moment(path: Path, row: int, value: object) -> tuple[datetime, tuple[str, int] | None]:
    """A UTC datetime, and the epoch unit if the value was an epoch number."""
    if value is None or value is pd.NaT:
        raise BarFileError(path, "missing time", row)
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, np.datetime64):
        return _moment(path, row, pd.Timestamp(value))
    if isinstance(value, datetime):
        return _utc(value), None
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC), None
    text = _number_text(value)
    if text is not None:
        return _epoch(path, row, value, Decimal(text))
    if isinstance(value, str) and value.strip():
        try:
            return _utc(datetime.fromisoformat(value.strip())), None
        except ValueError:
            reason = f"bad time {value!r}: expected an ISO date/time or an epoch number"
            raise BarFileError(path, reason, row) from None
    raise BarFileError(path, f"bad time {value!r}: expected a date/time or an epoch number", row)


def _epoch(
    path: Path, row: int, value: object, number: Decimal
) -> tuple[datetime, tuple[str, int]]:
    name, per_second = next((n, p) for bound, n, p in _EPOCH_UNITS if abs(number) < bound)
    micros = int((number * 1_000_000 / per_second).to_integral_value())
    try:
        return _EPOCH + timedelta(microseconds=micros), (name, per_second)
    except OverflowError:
        raise BarFileError(path, f"bad time {value!r}: epoch out of range", row) from None


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# -- timeframe ---------------------------------------------------------------------------------


def _timeframe_of(value: str | Timeframe) -> Timeframe:
    return value if isinstance(value, Timeframe) else Timeframe(value)


def _infer_timeframe(path: Path, times: list[datetime]) -> Timeframe:
    """The most common gap between consecutive (sorted) bars, as a Timeframe (ties: the
    shortest gap). Business-day data (weekend gaps of 3 days) still gives `1d`."""
    if len(times) < 2:
        raise BarFileError(path, "one bar only: cannot infer the timeframe; pass timeframe=")
    gaps = Counter(b - a for a, b in pairwise(times))
    gap = min(gaps, key=lambda g: (-gaps[g], g))
    seconds = gap.total_seconds()
    if seconds != int(seconds) or seconds > MAX_INFERRED_SECONDS:
        raise BarFileError(
            path,
            f"the most common gap between bars is {gap}, not a bar length the engine's "
            "Timeframe can express (whole seconds, at most 7 days); pass timeframe=",
        )
    whole = int(seconds)
    unit, size = next((u, s) for u, s in _UNITS if whole % s == 0)
    return Timeframe(f"{whole // size}{unit}")
