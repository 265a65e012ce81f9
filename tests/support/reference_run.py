"""What a fault test compares with: the same trades through the same strategy loop, never
interrupted, in-process with SQLite; and the comparison of a live run's tables with it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from trading_engine.adapters.sql.connections import connect_postgres
from trading_engine.adapters.sql.strategy_tables import PostgresStrategyTables
from trading_engine.app.bootstrap.strategy import simulated_strategy_loop
from trading_engine.app.runtime.config import load_settings
from trading_engine.domain.market import Trade
from trading_engine.domain.models import OHLCV, Signal
from trading_engine.domain.values import Exchange, Symbol, Timeframe

VENUE, SYMBOL = Exchange("gmo"), Symbol("BTC_JPY")


@dataclass(frozen=True)
class Reference:
    signals: list[Signal]
    bars: dict[str, list[OHLCV]]  # timeframe -> bars, oldest first

    @property
    def signal_ids(self) -> list[str]:
        return [s.signal_id for s in self.signals]

    @property
    def counts(self) -> str:
        """Bars per timeframe, for a test's figures: `731/146`."""
        return "/".join(str(len(bars)) for bars in self.bars.values())


def uninterrupted_run(
    settings: dict[str, str], trades: Sequence[Trade], tmp_path: Path
) -> Reference:
    """`settings` as the engine's environment gets them (OHLCV_TIMEFRAMES comma-separated)."""
    timeframes = settings["OHLCV_TIMEFRAMES"].split(",")
    overrides = {k: v for k, v in settings.items() if k != "OHLCV_TIMEFRAMES"}
    loaded = load_settings(
        DATABASE_URL=f"sqlite:///{tmp_path}/reference.sqlite3",
        OHLCV_TIMEFRAMES=timeframes,
        **overrides,
    )
    loop, _log, close = simulated_strategy_loop(loaded, list(trades))
    try:
        loop.start()
        while loop.step():
            pass  # no end-of-data close: the live engine's last bars are still open too
        bars = {
            tf: loop.bar_store.recent(VENUE, SYMBOL, Timeframe(tf), None, 100_000)
            for tf in timeframes
        }
        return Reference(list(loop.stats.signals), bars)
    finally:
        close()


def assert_tables_equal(database_url: str, schema: str, reference: Reference) -> list[str]:
    """The live run's bars and signals (PostgreSQL) equal the reference's. Returns the stored
    signal ids."""
    conn = connect_postgres(database_url, schema=schema)
    live = PostgresStrategyTables(conn)
    try:
        for tf, expected in reference.bars.items():
            assert live.recent(VENUE, SYMBOL, Timeframe(tf), None, 100_000) == expected, tf
        stored = [row[0] for row in conn.execute("SELECT signal_id FROM signals ORDER BY id")]
    finally:
        live.close()
    assert sorted(stored) == sorted(reference.signal_ids)
    return stored


def open_bar_trades(trades: Sequence[Trade], longest_minutes: int = 5) -> int:
    """The trades of the bars still open at the end (the last bar of the longest timeframe):
    the strategy holds them unacknowledged until their bar closes, by design."""
    last_open = max(t.timestamp for t in trades).replace(second=0, microsecond=0)
    last_open -= timedelta(minutes=last_open.minute % longest_minutes)
    return sum(1 for t in trades if t.timestamp >= last_open)
