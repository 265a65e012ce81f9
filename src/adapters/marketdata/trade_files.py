"""GMO Coin's daily trade files: `symbol,side,size,price,timestamp`, plain or gzipped.

GMO publishes one file per symbol and trading day (e.g. `20250701_BTC_JPY.csv.gz`, the day
starting 21:00 UTC). Rows look like `BTC_JPY,BUY,0.0010,15499938.000,2025-06-30 21:00:19.862`:
the timestamp is UTC without a zone marker, numbers are plain decimals.

Reading streams: one row in, one `Trade` out, so a day of a busy symbol (millions of rows)
replays in constant memory. A bad row stops the read with a `TradeFileError` naming the file,
the line and the reason: a replay that silently skipped rows would build different bars from
the live run it stands in for. Prices and sizes keep exactly the digits written
(`15499938.000` stays `Decimal("15499938.000")`).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO

from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.market import Trade
from trading_engine.domain.values import Exchange, Side, Symbol
from trading_engine.files import atomic_path

COLUMNS = ("symbol", "side", "size", "price", "timestamp")
HEADER = ",".join(COLUMNS)
_GZIP_MAGIC = b"\x1f\x8b"
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# GMO writes `2025-06-30 21:00:19.862`; a `T`, more fraction digits or an explicit UTC offset
# are accepted too (they are unambiguous), anything else is a bad timestamp.
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?P<zone>Z|[+-][0-9]{2}:[0-9]{2})?"
)

PathLike = str | os.PathLike[str]


class TradeFileError(ValueError):
    """A trade file that cannot be read as GMO's format: says which file, which line, why."""

    def __init__(self, path: PathLike, line: int, reason: str) -> None:
        self.path = os.fspath(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.path}, line {line}: {reason}")


def read_gmo_trades(path: PathLike, exchange: str | Exchange = "gmo") -> Iterator[Trade]:
    """The file's trades in file order, read lazily (plain or gzip, told apart by content)."""
    venue = exchange if isinstance(exchange, Exchange) else Exchange(exchange)
    source = Path(path)
    compressed = _is_gzip(source)  # now, so a missing file fails the call, not the first read
    return _read(source, compressed, venue)


def _read(path: Path, compressed: bool, exchange: Exchange) -> Iterator[Trade]:
    line = 0
    try:
        with _open_text(path, compressed) as text:
            rows = csv.reader(text)
            header = next(rows, None)
            line = rows.line_num or 1
            order = _column_order(path, header)
            symbols: dict[str, Symbol] = {}  # one Symbol per distinct text, not per row
            for row in rows:
                line = rows.line_num
                if not row or row == [""]:
                    continue  # blank line (e.g. a trailing newline pair)
                yield _trade(path, line, row, order, exchange, symbols)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as error:
        if isinstance(error, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        # A truncated download, a corrupt archive, bytes that are not UTF-8. The text is
        # decoded in chunks, so the fault is at or somewhat after the last line read.
        raise TradeFileError(path, line + 1, f"unreadable from here on: {error}") from error


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as probe:
        return probe.read(2) == _GZIP_MAGIC


def _open_text(path: Path, compressed: bool) -> IO[str]:
    # utf-8-sig: a byte-order mark (a file re-saved by a spreadsheet) is not part of the header
    if compressed:
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def _column_order(path: Path, header: list[str] | None) -> tuple[int, ...]:
    names = [name.strip().lower() for name in header or ()]
    if sorted(names) != sorted(COLUMNS):
        found = ",".join(header) if header else "an empty file"
        raise TradeFileError(path, 1, f"missing header: expected {HEADER!r}, found {found!r}")
    return tuple(names.index(column) for column in COLUMNS)


def _trade(
    path: Path,
    line: int,
    row: list[str],
    order: tuple[int, ...],
    exchange: Exchange,
    symbols: dict[str, Symbol],
) -> Trade:
    if len(row) != len(COLUMNS):
        raise TradeFileError(path, line, f"expected {len(COLUMNS)} columns, found {len(row)}")
    symbol_text, side_text, size_text, price_text, time_text = (row[i] for i in order)
    try:
        symbol = symbols.get(symbol_text) or symbols.setdefault(symbol_text, Symbol(symbol_text))
    except InvalidValue as error:
        raise TradeFileError(path, line, f"bad symbol {symbol_text!r}: {error.reason}") from None
    if side_text not in (Side.BUY.value, Side.SELL.value):
        raise TradeFileError(path, line, f"bad side {side_text!r}: expected BUY or SELL")
    size = _number(path, line, "size", size_text)
    price = _number(path, line, "price", price_text)
    timestamp = _timestamp(path, line, time_text)
    try:
        return Trade(exchange, symbol, Side(side_text), price, size, timestamp)
    except InvalidValue as error:
        reason = f"bad {error.field} {error.value}: {error.reason}"
        raise TradeFileError(path, line, reason) from None


def _number(path: Path, line: int, field: str, text: str) -> Decimal:
    if not _NUMBER.fullmatch(text):
        raise TradeFileError(path, line, f"bad {field} {text!r}: expected a plain decimal number")
    return Decimal(text)


def _timestamp(path: Path, line: int, text: str) -> datetime:
    match = _TIMESTAMP.fullmatch(text)
    try:
        if match is None:
            raise ValueError("expected e.g. 2025-06-30 21:00:19.862 (UTC)")
        if match["zone"] == "Z":
            text = text[:-1]
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise TradeFileError(path, line, f"bad timestamp {text!r}: {error}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def write_gmo_trades(path: PathLike, trades: Iterable[Trade]) -> int:
    """Write `trades` in GMO's format (gzipped if the name ends in `.gz`); returns the count.

    The file appears complete or not at all (written beside it, then renamed), and a gzip
    file carries no name or time in its header, so the same trades give the same bytes.
    """
    target = Path(path)
    count = 0
    with atomic_path(target) as partial, partial.open("wb") as raw:
        binary: IO[bytes] = (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
            if target.suffix == ".gz"
            else raw
        )
        with io.TextIOWrapper(binary, encoding="utf-8", newline="") as text:
            text.write(HEADER + "\n")
            for trade in trades:
                text.write(format_row(trade))
                count += 1
    return count


def format_row(trade: Trade) -> str:
    """One CSV line (with its newline) as GMO writes it."""
    return (
        f"{trade.symbol},{trade.side.value},{trade.size:f},{trade.price:f},"
        f"{format_timestamp(trade.timestamp)}\n"
    )


def format_timestamp(moment: datetime) -> str:
    """UTC, no zone marker, milliseconds; microseconds only when the time has them."""
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%d %H:%M:%S")
    if utc.microsecond % 1000:
        return f"{text}.{utc.microsecond:06d}"
    return f"{text}.{utc.microsecond // 1000:03d}"
