"""OHLCV bar files for backtests: CSV (plain or `.csv.gz`) or Parquet, read into `OHLCV` bars.

The layout is found, not configured:

* the time is a column named `timestamp`, `datetime`, `open_time`, `date` or `time` (any
  case), or else the file's index: a Parquet index (a DatetimeIndex written by `to_parquet`)
  or a CSV's unnamed first column (what `df.to_csv()` writes for a DatetimeIndex);
* `open`, `high`, `low`, `close` and (optional, else 0) `volume` columns, any case and order;
  other columns are ignored.

Times may be ISO strings, dates, datetimes or epoch numbers; an epoch's unit is told by its
magnitude (seconds below 1e11, then milliseconds, microseconds, nanoseconds). Naive times
are UTC, aware ones are converted to UTC.

Prices keep the digits written: CSV cells are read as text (`100.34` stays `Decimal("100.34")`)
and Parquet floats go through their shortest repr, so `100.34` never becomes
`100.3400000000000034106...`. A value with more than the store's 8 decimal places
(`DECIMAL(20,8)`; float noise such as `0.30000000000000004`, or a quote in 1e-10 steps) is
rounded to 8, half to even, and the file's rounded values are counted in one `BarFileWarning`
(`warnings.warn`: the file, how many, the first row and column). A price that rounds to 0 is
still refused: prices are greater than zero.

The whole file is checked before anything is returned: a bad file raises `BarFileError`
naming the file, the data row (1-based, in file order) where there is one, the column, and
the reason; every row is checked before the bar length is inferred, and before the symbol
(the file's name) is. Bars come back sorted by time; two bars at the same time are an error.

The bar length (`Timeframe`) is given, or inferred from the spacing of the bars: the most
common gap (60 s -> `1m`, 1 day -> `1d` also for business days with weekend and holiday gaps,
7 days -> `1w`), or calendar months (`1M`; `3M` quarters) when most consecutive bars are in
consecutive months, whatever day of the month they are stamped (gaps of 28 to 31 days). A bar
must end by the time the next one starts (`Timeframe.end_of`): two bars closer together than
the timeframe (a 12-hour gap in daily bars) are refused, naming both rows, because a backtest
only acts on a bar's signal once the bar has ended: the decision would silently wait a bar.
"""

from __future__ import annotations

import math
import os
import re
import warnings
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd

from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.models import OHLCV
from trading_engine.domain.values import INTEGER_DIGITS, SCALE, Exchange, Symbol, Timeframe

PathLike = str | os.PathLike[str]

PRICE_COLUMNS = ("open", "high", "low", "close")
# Preferred first: ccxt-style exports carry both `timestamp` (epoch ms) and `datetime` (ISO).
TIME_COLUMNS = ("timestamp", "datetime", "open_time", "date", "time")
SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PLAIN = re.compile(rf"[0-9]{{1,{INTEGER_DIGITS}}}(?:\.[0-9]{{0,{SCALE}}})?")  # as DECIMAL(20,8)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Epoch units by magnitude: the first whose bound exceeds |value| (1e11 s is the year 5138).
_EPOCH_UNITS = ((1e11, "s", 1), (1e14, "ms", 10**3), (1e17, "us", 10**6), (math.inf, "ns", 10**9))
_UNITS = (("w", 7 * 86_400), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
_INDEX = object()  # the key of the index / unnamed first column among the candidates
_QUANTUM = Decimal(1).scaleb(-SCALE)  # 0.00000001
_MONTHLY_GAP = timedelta(days=28)  # the shortest month: from here on, bars may be monthly


class BarFileError(ValueError):
    """A bar file that cannot be read: says which file, which data row if any, and why."""

    def __init__(self, path: PathLike, reason: str, row: int | None = None) -> None:
        self.path = os.fspath(path)
        self.row = row
        self.reason = reason
        where = f", data row {row}" if row is not None else ""
        super().__init__(f"{self.path}{where}: {reason}")


class BarFileWarning(UserWarning):
    """Values of a bar file that had more than 8 decimal places and were rounded to 8 (the
    store's `DECIMAL(20,8)`): issued once per file by `read_bar_file` / `read_bars` through
    `warnings.warn`; catch them with `warnings.catch_warnings(record=True)` to show them."""

    def __init__(self, path: PathLike, rounded: int, row: int, column: str) -> None:
        self.path = os.fspath(path)
        self.rounded = rounded
        self.row = row  # the first rounded value's data row and column
        self.column = column
        values = "1 value had" if rounded == 1 else f"{rounded} values had"
        super().__init__(
            f"{self.path}: {values} more than {SCALE} decimal places and "
            f"{'was' if rounded == 1 else 'were'} rounded to {SCALE} "
            f"(first: data row {row}, column {column})"
        )


def read_bar_file(
    path: PathLike,
    *,
    exchange: str | Exchange,
    symbol: str | Symbol,
    timeframe: str | Timeframe | None = None,
) -> list[OHLCV]:
    """All bars of one file, sorted by time. Without `timeframe`, it is inferred from the
    spacing of the bars (e.g. 60 s -> `1m`, 1 day -> `1d`, month to month -> `1M`). Values
    rounded to 8 decimal places are reported with one `BarFileWarning`."""
    return _read(path, exchange, symbol, "argument", timeframe)


def read_bars(
    paths: Sequence[PathLike],
    *,
    exchange: str | Exchange,
    symbols: Sequence[str] | None = None,
    timeframe: str | Timeframe | None = None,
) -> dict[str, list[OHLCV]]:
    """One file per symbol. Without `symbols`, a file's symbol is its name without the
    suffix, in upper case (`default_symbol`): `goog.csv` -> `GOOG`, `eurusd_1h.csv.gz` ->
    `EURUSD_1H`, `BTC_JPY.parquet` -> `BTC_JPY`."""
    if isinstance(paths, str | os.PathLike):
        raise TypeError("paths must be a sequence of paths, not a single path")
    if symbols is not None and len(symbols) != len(paths):
        raise ValueError(f"{len(paths)} paths but {len(symbols)} symbols")
    result: dict[str, list[OHLCV]] = {}
    for i, path in enumerate(paths):
        if symbols is not None:
            name, named = symbols[i], "--symbol"
        else:
            name, named = default_symbol(path), "file name"
        bars = _read(path, exchange, name, named, timeframe, taken=set(result))
        result[bars[0].symbol.value] = bars
    return result


def default_symbol(path: PathLike) -> str:
    """A file's symbol when none is given: its name without `.csv`, `.csv.gz`, `.parquet` or
    `.pq`, in upper case (`my-data.2024.csv` -> `MY-DATA.2024`, which `Symbol` refuses)."""
    name = Path(path).name
    suffix = next((s for s in SUFFIXES if name.lower().endswith(s)), "")
    return name[: len(name) - len(suffix)].upper()


def _read(
    path: PathLike,
    exchange: str | Exchange,
    symbol: str | Symbol,
    named: str,
    timeframe: str | Timeframe | None,
    taken: set[str] | frozenset[str] = frozenset(),
) -> list[OHLCV]:
    """The file first (layout, every row, duplicate times), then its symbol, then the bar
    length and whether the bars fit it."""
    venue = exchange if isinstance(exchange, Exchange) else Exchange(exchange)
    given = None if timeframe is None else _timeframe_of(timeframe)
    source = Path(path)
    frame, index = _load(source)
    rows, rounding = _rows(source, frame, index)
    if not rows:
        raise BarFileError(source, "no bars in the file")
    rows.sort(key=lambda row: row[1])  # stable: equal times keep file order for the message
    for (row_a, time_a, *_), (row_b, time_b, *_) in pairwise(rows):
        if time_a == time_b:
            reason = f"duplicate time {time_a.isoformat()} (data rows {row_a} and {row_b})"
            raise BarFileError(source, reason)
    instrument = _symbol(source, symbol, named)
    if instrument.value in taken:
        raise BarFileError(
            source,
            f"a second file for symbol {instrument.value}; name each file's symbol with --symbol",
        )
    bar_length = given or _infer_timeframe(source, [row[1] for row in rows])
    _refuse_overlaps(source, rows, bar_length, inferred=given is None)
    # every value was checked where it was read (`_rows`, `_price`: row and column named)
    bars = [
        OHLCV.checked(venue, instrument, bar_length, moment, open_, high, low, close, volume)
        for _, moment, open_, high, low, close, volume in rows
    ]
    if rounding.count:
        warnings.warn(
            BarFileWarning(source, rounding.count, rounding.row, rounding.column), stacklevel=3
        )
    return bars


def _symbol(path: Path, symbol: str | Symbol, named: str) -> Symbol:
    if isinstance(symbol, Symbol):
        return symbol
    try:
        return Symbol(symbol)
    except InvalidValue as error:
        if named == "file name":
            reason = (
                f"symbol {symbol!r} taken from the file name is not valid: {error.reason}; "
                "name it with --symbol"
            )
        elif named == "--symbol":
            reason = f"symbol {symbol!r} given with --symbol is not valid: {error.reason}"
        else:
            reason = f"symbol {symbol!r} is not valid: {error.reason}"
        raise BarFileError(path, reason) from None


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


def _time_column(path: Path, frame: pd.DataFrame, index: pd.Series | None) -> tuple[pd.Series, str]:
    """The times, and how to name where they are in a message."""
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
            return index, f"index {index.name}"
        if column is not None:
            return frame[column], f"column {column}"
    if index is not None:
        csv = path.name.lower().endswith((".csv", ".csv.gz"))
        return index, "the unnamed first column" if csv else "the index"
    names = ", ".join(frame.columns) or "none"
    raise BarFileError(
        path,
        "no time column: expected one named timestamp, datetime, open_time, date or time "
        f"(any case), or a time index / unnamed first column; found columns {names}",
    )


# -- rows --------------------------------------------------------------------------------------

_Row = tuple[int, datetime, Decimal, Decimal, Decimal, Decimal, Decimal]


@dataclass
class _Rounding:
    """Values rounded to 8 places: how many, and the first one's row and column."""

    count: int = 0
    row: int = 0
    column: str = ""

    def add(self, row: int, column: str) -> None:
        if not self.count:
            self.row, self.column = row, column
        self.count += 1


def _rows(path: Path, frame: pd.DataFrame, index: pd.Series | None) -> tuple[list[_Row], _Rounding]:
    columns: dict[str, list[object]] = {}
    for name in (*PRICE_COLUMNS, "volume"):
        column = _find(path, frame, name)
        if column is None:
            if name == "volume":
                continue
            found = ", ".join(frame.columns) or "none"
            raise BarFileError(path, f"missing column {name!r}; found columns {found}")
        values = frame[column].to_numpy()
        # Python floats and ints from float64 / int64 / text; other widths (float32) stay
        # numpy scalars, read at their own width by `_number_text`.
        wide = values.dtype in (np.float64, np.int64, object)
        columns[name] = values.tolist() if wide else list(values)
    times = _times(path, *_time_column(path, frame, index))
    rounding = _Rounding()
    # One Decimal per distinct text, shared by every cell that holds it: a bar opens where
    # the last one closed, and prices repeat (the numbers are immutable; a third of a long
    # run's memory was its bars' Decimals).
    seen: dict[str, Decimal] = {}
    opens, highs, lows, closes = (
        _decimals(path, name, columns[name], rounding, seen=seen) for name in PRICE_COLUMNS
    )
    volumes = columns.get("volume")
    if volumes is None:
        volumes = [Decimal(0)] * len(times)
    else:
        volumes = _decimals(path, "volume", volumes, rounding, zero_ok=True, seen=seen)
    del seen
    rows: list[_Row] = []
    for i, (moment, open_, high, low, close, volume) in enumerate(
        zip(times, opens, highs, lows, closes, volumes, strict=True)
    ):
        if not (low <= open_ <= high and low <= close <= high):
            row = i + 1
            if high < low:
                raise BarFileError(path, f"high {high} is below low {low}", row)
            name, value = ("open", open_) if not low <= open_ <= high else ("close", close)
            raise BarFileError(path, f"{name} {value} is outside [low {low}, high {high}]", row)
        rows.append((i + 1, moment, open_, high, low, close, volume))
    return rows, rounding


def _decimals(
    path: Path,
    field: str,
    cells: list[object],
    rounding: _Rounding,
    *,
    zero_ok: bool = False,
    seen: dict[str, Decimal] | None = None,
) -> list[Decimal]:
    """A column's cells as `_price` reads each, without its full check for the cells that
    are plain numbers that fit (at most 12 digits before the point and 8 after, no sign or
    exponent): a bar file is read at a few microseconds a bar, not tens. Any other cell
    (text with a sign or an exponent, more decimals, not a number) goes through `_price`,
    which rounds it or names its row and column."""
    column: list[Decimal] = []
    append, plain, zero = column.append, _PLAIN.fullmatch, Decimal(0)
    shared = {} if seen is None else seen
    for i, cell in enumerate(cells):
        kind = type(cell)
        text = cell if kind is str else repr(cell) if kind is float or kind is int else None
        if text is not None and plain(text):
            number = shared.get(text)
            if number is None:
                number = shared[text] = Decimal(text)
            if number > zero or (zero_ok and number == zero):
                append(number)
                continue
        append(_price(path, i + 1, field, cell, rounding, zero_ok=zero_ok))
    return column


def _price(
    path: Path,
    row: int,
    field: str,
    value: object,
    rounding: _Rounding,
    *,
    zero_ok: bool = False,
) -> Decimal:
    """The cell as a Decimal that fits DECIMAL(20,8): more than 8 places are rounded to 8
    (half to even) and counted; a price must stay greater than zero once rounded."""
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
    if number.adjusted() >= INTEGER_DIGITS:
        reason = f"more than {INTEGER_DIGITS} digits before the point (the store's DECIMAL(20,8))"
        raise BarFileError(path, f"bad {field} {text}: {reason}", row)
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent < -SCALE:
        with localcontext(prec=INTEGER_DIGITS + SCALE + 2, rounding=ROUND_HALF_EVEN):
            rounded = number.quantize(_QUANTUM)
        if rounded != number:
            rounding.add(row, field)
        if rounded == 0 and not zero_ok:
            reason = f"must be greater than zero, and rounds to 0 at {SCALE} decimal places"
            raise BarFileError(path, f"bad {field} {text}: {reason}", row)
        number = rounded
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


def _times(path: Path, column: pd.Series, where: str) -> list[datetime]:
    """UTC datetimes; `where` names the column (or index) in messages."""
    if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(column):
        stamps = pd.to_datetime(column, utc=True)  # naive: taken as UTC; aware: converted
        for i, stamp in enumerate(stamps):
            if pd.isna(stamp):
                raise BarFileError(path, f"missing time in {where}", i + 1)
        return [stamp.to_pydatetime() for stamp in stamps]
    times: list[datetime] = []
    epoch_unit: tuple[str, int] | None = None
    for i, value in enumerate(column.to_numpy()):
        row = i + 1
        moment, unit = _moment(path, row, value, where)
        if unit is not None:
            if epoch_unit is None:
                epoch_unit = unit
            elif unit != epoch_unit:
                reason = (
                    f"epoch time {value!r} in {where} looks like {unit[0]} but earlier rows "
                    f"are in {epoch_unit[0]}"
                )
                raise BarFileError(path, reason, row)
        times.append(moment)
    return times


def _moment(
    path: Path, row: int, value: object, where: str
) -> tuple[datetime, tuple[str, int] | None]:
    """A UTC datetime, and the epoch unit if the value was an epoch number."""
    if value is None or value is pd.NaT:
        raise BarFileError(path, f"missing time in {where}", row)
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, np.datetime64):
        return _moment(path, row, pd.Timestamp(value), where)
    if isinstance(value, datetime):
        return _utc(value), None
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC), None
    text = _number_text(value)
    if text is not None:
        return _epoch(path, row, value, Decimal(text), where)
    if isinstance(value, str) and value.strip():
        try:
            return _utc(datetime.fromisoformat(value.strip())), None
        except ValueError:
            reason = f"bad time {value!r} in {where}: expected an ISO date/time or an epoch number"
            raise BarFileError(path, reason, row) from None
    reason = f"bad time {value!r} in {where}: expected a date/time or an epoch number"
    raise BarFileError(path, reason, row)


def _epoch(
    path: Path, row: int, value: object, number: Decimal, where: str
) -> tuple[datetime, tuple[str, int]]:
    name, per_second = next((n, p) for bound, n, p in _EPOCH_UNITS if abs(number) < bound)
    micros = int((number * 1_000_000 / per_second).to_integral_value())
    try:
        return _EPOCH + timedelta(microseconds=micros), (name, per_second)
    except OverflowError:
        raise BarFileError(
            path, f"bad time {value!r} in {where}: epoch out of range", row
        ) from None


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# -- timeframe ---------------------------------------------------------------------------------


def _timeframe_of(value: str | Timeframe) -> Timeframe:
    return value if isinstance(value, Timeframe) else Timeframe(value)


def _infer_timeframe(path: Path, times: list[datetime]) -> Timeframe:
    """The bar length the bars' spacing says: the most common gap between consecutive (sorted)
    bars (ties: the shorter), so business days (weekend gaps of 3 days) still give `1d` and
    hourly FX with weekend gaps `1h`; whole weeks give `w`. From 28 days on, calendar months
    are tried too: when at least as many consecutive bars are exactly n calendar months apart
    as share the most common gap, the bars are `nM` (month-end stamps are 28 to 31 days apart)."""
    if len(times) < 2:
        raise BarFileError(
            path, "one bar only: the bar length cannot be inferred; pass --timeframe (e.g. 1d)"
        )
    gaps = Counter(b - a for a, b in pairwise(times))
    gap = min(gaps, key=lambda g: (-gaps[g], g))
    if gap >= _MONTHLY_GAP:
        steps = Counter(_month_number(b) - _month_number(a) for a, b in pairwise(times))
        months = min(steps, key=lambda n: (-steps[n], n))
        if months > 0 and steps[months] >= gaps[gap]:
            inferred = _timeframe_or_none(f"{months}M")
            if inferred is not None:
                return inferred
    seconds = gap.total_seconds()
    whole = int(seconds)
    unit, size = next((u, s) for u, s in _UNITS if whole % s == 0) if whole else ("s", 1)
    inferred = _timeframe_or_none(f"{whole // size}{unit}") if whole == seconds else None
    if inferred is None:
        raise BarFileError(
            path,
            f"the most common gap between bars is {gap}, not a bar length the engine can "
            "express (whole seconds, up to 9999 of a unit: s, m, h, d, w or M for months); "
            "pass --timeframe",
        )
    return inferred


def _month_number(moment: datetime) -> int:
    return moment.year * 12 + moment.month - 1  # times here are UTC


def _timeframe_or_none(text: str) -> Timeframe | None:
    try:
        return Timeframe(text)
    except InvalidValue:
        return None


def _refuse_overlaps(
    path: Path, rows: Sequence[_Row], timeframe: Timeframe, *, inferred: bool
) -> None:
    """Each bar ends by the time the next one starts: a backtest acts on a bar's signal only
    once the bar has ended, so a bar reaching past the next start would delay its decision by
    a bar, silently."""
    for (row_a, time_a, *_), (row_b, time_b, *_) in pairwise(rows):
        end = timeframe.end_of(time_a)
        if end > time_b:
            how = "inferred from the bars' spacing" if inferred else "given"
            raise BarFileError(
                path,
                f"data rows {row_a} ({time_a.isoformat()}) and {row_b} ({time_b.isoformat()}) "
                f"are closer together than the timeframe {timeframe} ({how}): the bar of row "
                f"{row_a} would end at {end.isoformat()}, after the next one starts; pass a "
                "shorter --timeframe, or remove the extra bar",
            )
