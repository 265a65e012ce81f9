"""The ohlcv / signals tables: one suite, run on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from trading_engine.adapters.sql.connections import connect_postgres, connect_sqlite
from trading_engine.adapters.sql.migrations import migrate_postgres, migrate_sqlite
from trading_engine.adapters.sql.strategy_tables import PostgresStrategyTables, SqliteStrategyTables
from trading_engine.domain.models import OHLCV, Signal
from trading_engine.domain.values import Exchange, Symbol, Timeframe

EX, SYM, M1 = Exchange("gmo"), Symbol("BTC_JPY"), Timeframe("1m")
T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


def bar(minute: int, close: str = "15000000.12345678", volume: str = "0.5") -> OHLCV:
    price = Decimal(close)
    return OHLCV(
        EX, SYM, M1, T0 + timedelta(minutes=minute), price, price, price, price, Decimal(volume)
    )


def signal(signal_id: str = "sig-1", **overrides: object) -> Signal:
    fields: dict[str, object] = {
        "signal_id": signal_id,
        "exchange": EX,
        "symbol": SYM,
        "strategy": "moving_average_cross",
        "action": "enter_long",
        "confidence": Decimal("0.75"),
        "price_ref": Decimal("15000000.5"),
        "timestamp": T0,
        "indicators": {"sma_fast": 1.5, "sma_slow": None},
        "meta": {"reason": "x"},
    }
    fields.update(overrides)
    return Signal(**fields)  # type: ignore[arg-type]


class StrategyTablesContract:
    @pytest.fixture
    def tables(self) -> Iterator:
        raise NotImplementedError

    def test_bars_round_trip_exactly_oldest_first(self, tables) -> None:
        tables.upsert([bar(0), bar(1, "1.00000001"), bar(2, "99999999999.99999999")])
        stored = tables.recent(EX, SYM, M1, before=None, limit=10)
        assert stored == [bar(0), bar(1, "1.00000001"), bar(2, "99999999999.99999999")]
        assert stored[0].timestamp.tzinfo is not None

    def test_upsert_is_idempotent_and_replaces(self, tables) -> None:
        tables.upsert([bar(0), bar(1)])
        tables.upsert([bar(0), bar(1, volume="0.7")])
        assert tables.recent(EX, SYM, M1, None, 10) == [bar(0), bar(1, volume="0.7")]

    def test_recent_before_and_limit(self, tables) -> None:
        tables.upsert([bar(m) for m in range(10)])
        before = T0 + timedelta(minutes=7)
        assert tables.recent(EX, SYM, M1, before, 3) == [bar(4), bar(5), bar(6)]
        assert tables.recent(EX, SYM, Timeframe("5m"), None, 3) == []
        assert tables.recent(EX, Symbol("ETH_JPY"), M1, None, 3) == []

    def test_times_are_stored_in_utc(self, tables) -> None:
        jst = timezone(timedelta(hours=9))
        local = OHLCV(
            EX,
            SYM,
            M1,
            T0.astimezone(jst),
            Decimal(1),
            Decimal(1),
            Decimal(1),
            Decimal(1),
            Decimal(0),
        )
        tables.upsert([local])
        (stored,) = tables.recent(EX, SYM, M1, None, 1)
        assert stored.timestamp == T0
        assert stored.timestamp.utcoffset() == timedelta(0)

    def test_signal_is_stored_once(self, tables) -> None:
        assert tables.add(signal()) is True
        assert tables.add(signal(action="exit")) is False
        stored = tables.get("sig-1")
        assert stored == signal()
        assert tables.get("missing") is None

    def test_signals_stored_together_each_once(self, tables) -> None:
        tables.add(signal("sig-1"))
        tables.add_many([signal("sig-1", action="exit"), signal("sig-2"), signal("sig-3")])
        tables.add_many([])
        assert tables.get("sig-1") == signal("sig-1")
        assert tables.get("sig-3") == signal("sig-3")
        assert tables.add(signal("sig-2")) is False


ALL_MIGRATIONS = ["0001_ohlcv_and_signals", "0002_orders_executions_positions", "0003_engine_log"]


class TestSqliteStrategyTables(StrategyTablesContract):
    @pytest.fixture
    def tables(self, tmp_path: Path) -> Iterator[SqliteStrategyTables]:
        conn = connect_sqlite(tmp_path / "engine.sqlite3")
        assert migrate_sqlite(conn) == ALL_MIGRATIONS
        assert migrate_sqlite(conn) == []  # re-runnable
        tables = SqliteStrategyTables(conn)
        yield tables
        tables.close()


@pytest.mark.postgres
class TestPostgresStrategyTables(StrategyTablesContract):
    @pytest.fixture
    def tables(self, pg_url: str, pg_schema: str) -> Iterator[PostgresStrategyTables]:
        conn = connect_postgres(pg_url, schema=pg_schema)
        assert migrate_postgres(conn) == ALL_MIGRATIONS
        assert migrate_postgres(conn) == []
        tables = PostgresStrategyTables(conn)
        yield tables
        tables.close()

    @pytest.mark.parametrize(
        ("table", "seed_columns"),
        [
            (
                "orders",
                "id exchange symbol order_id signal_id side order_type price size status "
                "filled_size average_price timestamp created_at updated_at",
            ),
            (
                "executions",
                "id exchange symbol order_id execution_id side price size fee timestamp created_at",
            ),
            (
                "positions",
                "id exchange symbol side size average_price unrealized_pnl realized_pnl updated_at",
            ),
        ],
    )
    def test_read_model_tables_start_with_the_seeds_columns(
        self, tables, table: str, seed_columns: str
    ) -> None:
        rows = tables.conn.execute(
            "SELECT column_name, numeric_precision, numeric_scale "
            "FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = %s ORDER BY ordinal_position",
            (table,),
        ).fetchall()
        names = [r[0] for r in rows]
        assert names[: len(seed_columns.split())] == seed_columns.split()
        decimals = {r[0]: (r[1], r[2]) for r in rows if r[1] is not None and r[2]}
        assert set(decimals.values()) == {(20, 8)}

    def test_columns_are_the_seeds(self, tables) -> None:
        rows = tables.conn.execute(
            "SELECT column_name, data_type, numeric_precision, numeric_scale "
            "FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = 'ohlcv' ORDER BY ordinal_position"
        ).fetchall()
        assert [r[0] for r in rows] == [
            "id",
            "exchange",
            "symbol",
            "timeframe",
            "timestamp",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "created_at",
        ]
        assert {r[0]: (r[2], r[3]) for r in rows}["close"] == (20, 8)
        with pytest.raises(psycopg.errors.UniqueViolation):
            tables.conn.execute(
                "INSERT INTO signals (signal_id, exchange, symbol, strategy, action, confidence,"
                " price_ref) VALUES ('dup', 'gmo', 'BTC', 's', 'exit', 0.5, 1), "
                "('dup', 'gmo', 'BTC', 's', 'exit', 0.5, 1)"
            )
