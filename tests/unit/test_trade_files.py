"""GMO daily trade files: exact round trips, plain and gzip, and bad rows named by line."""

from __future__ import annotations

import gzip
import inspect
import itertools
import tracemalloc
from collections import deque
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from trading_engine.adapters.marketdata.synthetic import synthetic_trades
from trading_engine.adapters.marketdata.trade_files import (
    TradeFileError,
    read_gmo_trades,
    write_gmo_trades,
)
from trading_engine.domain.market import Trade
from trading_engine.domain.values import Exchange, Side, Symbol

HEADER = "symbol,side,size,price,timestamp\n"
GOOD_ROW = "BTC_JPY,BUY,0.0010,15499938.000,2025-06-30 21:00:19.862\n"


def write_text(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def test_reads_gmos_row_exactly(tmp_path: Path) -> None:
    path = write_text(tmp_path / "20250701_BTC_JPY.csv", HEADER + GOOD_ROW)

    (trade,) = read_gmo_trades(path)

    assert trade == Trade(
        exchange=Exchange("gmo"),
        symbol=Symbol("BTC_JPY"),
        side=Side.BUY,
        price=Decimal("15499938.000"),
        size=Decimal("0.0010"),
        timestamp=datetime(2025, 6, 30, 21, 0, 19, 862_000, tzinfo=UTC),
    )
    assert str(trade.price) == "15499938.000"  # the digits as written, not just the value
    assert str(trade.size) == "0.0010"
    assert trade.timestamp.utcoffset() is not None


def test_exchange_is_the_callers(tmp_path: Path) -> None:
    path = write_text(tmp_path / "t.csv", HEADER + GOOD_ROW)
    (trade,) = read_gmo_trades(path, exchange="bitflyer")
    assert trade.exchange == Exchange("bitflyer")


@pytest.mark.parametrize("name", ["trades.csv", "trades.csv.gz"])
def test_round_trip_is_exact(tmp_path: Path, name: str) -> None:
    start = datetime(2025, 7, 1, 21, tzinfo=UTC)
    trades = list(synthetic_trades(start=start, seed=3, count=2_000))
    trades.append(  # odd digits, sub-millisecond time, a SELL: all survive
        Trade(Exchange("gmo"), Symbol("BTC_JPY"), Side.SELL, Decimal("15000000.50"),
              Decimal("0.00000001"), datetime(2025, 7, 1, 23, 0, 0, 123_456, tzinfo=UTC))
    )  # fmt: skip
    path = tmp_path / name

    assert write_gmo_trades(path, trades) == len(trades)
    back = list(read_gmo_trades(path))

    assert back == trades
    assert [(str(t.price), str(t.size)) for t in back] == [
        (str(t.price), str(t.size)) for t in trades
    ]
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")


def test_written_file_is_gmos_format(tmp_path: Path) -> None:
    moment = datetime(2025, 6, 30, 21, 0, 19, 862_000, tzinfo=UTC)
    trade = Trade(Exchange("gmo"), Symbol("BTC_JPY"), Side.BUY, Decimal("15499938.000"),
                  Decimal("0.0010"), moment)  # fmt: skip
    path = tmp_path / "t.csv.gz"
    write_gmo_trades(path, [trade])
    assert gzip.decompress(path.read_bytes()).decode() == HEADER + GOOD_ROW


def test_same_trades_give_the_same_gzip_bytes(tmp_path: Path) -> None:
    start = datetime(2025, 7, 1, 21, tzinfo=UTC)
    write_gmo_trades(tmp_path / "a.csv.gz", synthetic_trades(start=start, seed=1, count=100))
    write_gmo_trades(tmp_path / "b.csv.gz", synthetic_trades(start=start, seed=1, count=100))
    assert (tmp_path / "a.csv.gz").read_bytes() == (tmp_path / "b.csv.gz").read_bytes()


def test_gzip_is_recognised_by_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "download.bin"
    path.write_bytes(gzip.compress((HEADER + GOOD_ROW).encode()))
    assert len(list(read_gmo_trades(path))) == 1


def test_tolerates_crlf_bom_blank_lines_and_column_order(tmp_path: Path) -> None:
    text = (
        "\ufefftimestamp,symbol,side,price,size\r\n2025-06-30 21:00:19.862,BTC,SELL,1.5,2\r\n\r\n"
    )
    (trade,) = read_gmo_trades(write_text(tmp_path / "t.csv", text))
    assert (trade.symbol, trade.side, trade.price, trade.size) == (
        Symbol("BTC"), Side.SELL, Decimal("1.5"), Decimal("2"),
    )  # fmt: skip


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    def trades():
        yield from synthetic_trades(start=datetime(2025, 7, 1, tzinfo=UTC), seed=1, count=10)
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError):
        write_gmo_trades(tmp_path / "t.csv.gz", trades())
    assert list(tmp_path.iterdir()) == []


BAD_ROWS = [
    ("BTC_JPY,BUY,0.0O10,15499938,2025-06-30 21:00:19.862", "bad size '0.0O10'"),
    ("BTC_JPY,BUY,0.001,1.5e7,2025-06-30 21:00:19.862", "bad price '1.5e7'"),
    ("BTC_JPY,BUY,-0.001,15499938,2025-06-30 21:00:19.862", "bad size '-0.001'"),
    ("BTC_JPY,BUY,0,15499938,2025-06-30 21:00:19.862", "bad size 0: must be greater than zero"),
    ("BTC_JPY,BUY,0.000000001,1,2025-06-30 21:00:19.862", "more than 8 decimal places"),
    ("BTC_JPY,BUY,0.001,NaN,2025-06-30 21:00:19.862", "bad price 'NaN'"),
    ("BTC_JPY,HOLD,0.001,15499938,2025-06-30 21:00:19.862", "bad side 'HOLD'"),
    ("BTC_JPY,,0.001,15499938,2025-06-30 21:00:19.862", "bad side ''"),
    ("BTC_JPY,BUY,0.001,15499938,2025-06-31 21:00:19.862", "bad timestamp '2025-06-31"),
    ("BTC_JPY,BUY,0.001,15499938,30/06/2025 21:00", "bad timestamp '30/06/2025 21:00'"),
    ("BTC_JPY,BUY,0.001,15499938,", "bad timestamp ''"),
    ("BTC_JPY,BUY,0.001,15499938", "expected 5 columns, found 4"),
    ("BTC_JPY,BUY,0.001,15499938,2025-06-30 21:00:19.862,x", "expected 5 columns, found 6"),
    ("btc jpy,BUY,0.001,15499938,2025-06-30 21:00:19.862", "bad symbol 'btc jpy'"),
]


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
@pytest.mark.parametrize(("row", "reason"), BAD_ROWS)
def test_bad_row_names_file_line_and_reason(
    tmp_path: Path, suffix: str, row: str, reason: str
) -> None:
    path = write_text(tmp_path / f"trades{suffix}", HEADER + GOOD_ROW * 3 + row + "\n" + GOOD_ROW)
    trades = read_gmo_trades(path)
    assert len(list(itertools.islice(trades, 3))) == 3  # the good rows before it are read

    with pytest.raises(TradeFileError) as caught:
        next(trades)

    error = caught.value
    assert error.line == 5
    assert error.path == str(path)
    assert str(error).startswith(f"{path}, line 5: ")
    assert reason in str(error)


@pytest.mark.parametrize(
    "text",
    [
        "",
        GOOD_ROW,
        "symbol,side,size,price\n" + GOOD_ROW,
        "symbol,side,size,price,time\n" + GOOD_ROW,
        "symbol,side,size,price,timestamp,extra\n" + GOOD_ROW,
    ],
    ids=["empty", "no-header", "short-header", "misnamed", "extra-column"],
)
def test_missing_header_is_line_1(tmp_path: Path, text: str) -> None:
    path = write_text(tmp_path / "t.csv", text)
    with pytest.raises(TradeFileError, match=r"t\.csv, line 1: missing header") as caught:
        list(read_gmo_trades(path))
    assert caught.value.line == 1


def test_truncated_gzip_says_where_reading_stopped(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    start = datetime(2025, 7, 1, tzinfo=UTC)
    write_gmo_trades(path, synthetic_trades(start=start, seed=1, count=20_000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    trades = read_gmo_trades(path)
    counted = [0]

    def drain() -> None:
        for _ in trades:
            counted[0] += 1

    with pytest.raises(TradeFileError, match="unreadable") as caught:
        drain()
    assert 1_000 < counted[0] < 20_000
    assert caught.value.line > counted[0]  # after the header and every row that was read


def test_missing_file_fails_at_the_call(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_gmo_trades(tmp_path / "nope.csv.gz")


def test_reads_lazily_in_constant_memory(tmp_path: Path) -> None:
    """200k rows: the reader is a generator, yields before it has seen the end of the file
    (a bad last row is only reported when reached), and holds no list of trades."""
    rows = 200_000
    path = tmp_path / "big.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="", compresslevel=1) as out:
        out.write(HEADER)
        for i in range(rows - 1):
            second, milli = divmod(i, 1000)
            side, size, price = "BUY" if i % 3 else "SELL", i % 9999 + 1, 15_000_000 + i % 5000
            out.write(
                f"BTC_JPY,{side},0.{size:04d},{price},"
                f"2025-07-01 21:{second // 60:02d}:{second % 60:02d}.{milli:03d}\n"
            )
        out.write("BTC_JPY,BUY,0.001,15000000,not a time\n")  # the last row is bad

    trades = read_gmo_trades(path)
    assert inspect.isgenerator(trades)
    first = list(itertools.islice(trades, 10))  # no error yet: the bad row is not read
    assert first[0].price == Decimal(15_000_000)

    deque(itertools.islice(trades, 150_000), maxlen=0)  # consume, keeping nothing
    tracemalloc.start()  # (slow: traced for the last 50k rows only)
    try:
        with pytest.raises(TradeFileError, match=f"line {rows + 1}: bad timestamp"):
            deque(trades, maxlen=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Keeping 50k trades would take >10 MB; streaming needs a few buffers only.
    assert peak < 1_000_000, f"peak {peak} bytes while streaming"
