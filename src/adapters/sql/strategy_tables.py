"""The `ohlcv` and `signals` tables on PostgreSQL and SQLite (same behaviour, two dialects).

Timestamps are stored as UTC in the seed's `TIMESTAMP` (no zone) columns and read back as
aware UTC datetimes. Decimals are exact in both: DECIMAL(20,8) in PostgreSQL, TEXT in SQLite.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # imported by PostgreSQL's users only
    import psycopg

from trading_engine.domain.models import OHLCV, Signal
from trading_engine.domain.values import Exchange, Symbol, Timeframe

_BAR_COLUMNS = "exchange, symbol, timeframe, timestamp, open, high, low, close, volume"
_SIGNAL_COLUMNS = (
    "signal_id, exchange, symbol, strategy, action, confidence, price_ref, indicators, meta,"
    " timestamp"
)


def _utc_naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _aware(moment: datetime | str) -> datetime:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _json(value: dict[str, Any]) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _bar_row(bar: OHLCV) -> tuple[Any, ...]:
    return (
        str(bar.exchange),
        str(bar.symbol),
        str(bar.timeframe),
        _utc_naive(bar.timestamp),
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
    )


def _bar_from_row(row: Sequence[Any]) -> OHLCV:
    exchange, symbol, timeframe, timestamp, *prices = row
    o, h, lo, c, v = (Decimal(str(p)) for p in prices)
    return OHLCV(
        Exchange(exchange), Symbol(symbol), Timeframe(timeframe), _aware(timestamp), o, h, lo, c, v
    )


def _signal_row(signal: Signal) -> tuple[Any, ...]:
    return (
        signal.signal_id,
        str(signal.exchange),
        str(signal.symbol),
        signal.strategy,
        signal.action.value,
        signal.confidence,
        signal.price_ref,
        _json(signal.indicators),
        _json(signal.meta),
        _utc_naive(signal.timestamp),
    )


def _signal_from_row(row: Sequence[Any]) -> Signal:
    sid, exchange, symbol, strategy, action, confidence, price, indicators, meta, ts = row
    load = lambda v: v if isinstance(v, dict) else orjson.loads(v) if v else {}  # noqa: E731
    return Signal(
        signal_id=sid,
        exchange=Exchange(exchange),
        symbol=Symbol(symbol),
        strategy=strategy,
        action=action,
        confidence=Decimal(str(confidence)),
        price_ref=Decimal(str(price)),
        timestamp=_aware(ts),
        indicators=load(indicators),
        meta=load(meta),
    )


class PostgresStrategyTables:
    """BarRepository and SignalRepository over one psycopg connection (autocommit).

    With `reconnect`, a connection the server dropped (a restart, a failover) is replaced at
    the next use; the call that met the broken one raises, and the caller's retry succeeds.
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        reconnect: Callable[[], psycopg.Connection] | None = None,
    ) -> None:
        self._conn, self._reconnect = conn, reconnect

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn.closed and self._reconnect is not None:
            self._conn = self._reconnect()
        return self._conn

    def upsert(self, bars: Sequence[OHLCV]) -> None:
        if not bars:
            return
        with self.conn.transaction(), self.conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO ohlcv ({_BAR_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                "ON CONFLICT (exchange, symbol, timeframe, timestamp) DO UPDATE SET "
                "open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, "
                "close = EXCLUDED.close, volume = EXCLUDED.volume",
                [_bar_row(bar) for bar in bars],
            )

    def recent(
        self,
        exchange: Exchange,
        symbol: Symbol,
        timeframe: Timeframe,
        before: datetime | None,
        limit: int,
    ) -> list[OHLCV]:
        rows = self.conn.execute(
            f"SELECT {_BAR_COLUMNS} FROM ohlcv WHERE exchange = %s AND symbol = %s "
            "AND timeframe = %s AND (%s::timestamp IS NULL OR timestamp < %s::timestamp) "
            "ORDER BY timestamp DESC LIMIT %s",
            (
                str(exchange),
                str(symbol),
                str(timeframe),
                before and _utc_naive(before),
                before and _utc_naive(before),
                limit,
            ),
        ).fetchall()
        return [_bar_from_row(row) for row in reversed(rows)]

    def add(self, signal: Signal) -> bool:
        row = self.conn.execute(
            f"INSERT INTO signals ({_SIGNAL_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
            "ON CONFLICT (signal_id) DO NOTHING RETURNING id",
            _signal_row(signal),
        ).fetchone()
        return row is not None

    def add_many(self, signals: Sequence[Signal]) -> None:
        if not signals:
            return
        with self.conn.transaction(), self.conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO signals ({_SIGNAL_COLUMNS}) "
                "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (signal_id) DO NOTHING",
                [_signal_row(signal) for signal in signals],
            )

    def get(self, signal_id: str) -> Signal | None:
        row = self.conn.execute(
            f"SELECT {_SIGNAL_COLUMNS} FROM signals WHERE signal_id = %s", (signal_id,)
        ).fetchone()
        return None if row is None else _signal_from_row(row)

    def close(self) -> None:
        self._conn.close()


class SqliteStrategyTables:
    """The same over SQLite (the embedded default)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def upsert(self, bars: Sequence[OHLCV]) -> None:
        if not bars:
            return
        rows = [_sqlite_bar_row(bar) for bar in bars]
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(
                f"INSERT INTO ohlcv ({_BAR_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (exchange, symbol, timeframe, timestamp) DO UPDATE SET "
                "open = excluded.open, high = excluded.high, low = excluded.low, "
                "close = excluded.close, volume = excluded.volume",
                rows,
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def recent(
        self,
        exchange: Exchange,
        symbol: Symbol,
        timeframe: Timeframe,
        before: datetime | None,
        limit: int,
    ) -> list[OHLCV]:
        bound = None if before is None else _utc_naive(before).isoformat(sep=" ")
        rows = self.conn.execute(
            f"SELECT {_BAR_COLUMNS} FROM ohlcv WHERE exchange = ? AND symbol = ? "
            "AND timeframe = ? AND (? IS NULL OR timestamp < ?) "
            "ORDER BY timestamp DESC LIMIT ?",
            (str(exchange), str(symbol), str(timeframe), bound, bound, limit),
        ).fetchall()
        return [_bar_from_row(row) for row in reversed(rows)]

    def add(self, signal: Signal) -> bool:
        cursor = self.conn.execute(_SQLITE_ADD_SIGNAL, _sqlite_signal_row(signal))
        return cursor.rowcount == 1

    def add_many(self, signals: Sequence[Signal]) -> None:
        if not signals:
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(_SQLITE_ADD_SIGNAL, [_sqlite_signal_row(s) for s in signals])
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def get(self, signal_id: str) -> Signal | None:
        row = self.conn.execute(
            f"SELECT {_SIGNAL_COLUMNS} FROM signals WHERE signal_id = ?", (signal_id,)
        ).fetchone()
        return None if row is None else _signal_from_row(row)

    def close(self) -> None:
        self.conn.close()


_SQLITE_ADD_SIGNAL = (
    f"INSERT INTO signals ({_SIGNAL_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (signal_id) DO NOTHING"
)


def _sqlite_signal_row(signal: Signal) -> tuple[Any, ...]:
    return tuple(
        str(v) if isinstance(v, Decimal) else v.isoformat(sep=" ") if isinstance(v, datetime) else v
        for v in _signal_row(signal)
    )


def _sqlite_bar_row(bar: OHLCV) -> tuple[str, ...]:
    """`_bar_row` as SQLite stores it (text), built directly: a backtest stores every bar."""
    return (
        str(bar.exchange),
        str(bar.symbol),
        str(bar.timeframe),
        _utc_naive(bar.timestamp).isoformat(sep=" "),
        str(bar.open),
        str(bar.high),
        str(bar.low),
        str(bar.close),
        str(bar.volume),
    )
