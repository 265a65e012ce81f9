"""The strategy loop over the in-process log and SQLite: same results whether or not it
crashed, nothing lost, nothing doubled, replays idempotent."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from trading_engine.adapters.clocks.system import SystemClock
from trading_engine.adapters.marketdata.gmo_messages import entry_fields
from trading_engine.adapters.marketdata.in_process import InProcessLog, InProcessSource
from trading_engine.adapters.marketdata.synthetic import synthetic_trades
from trading_engine.adapters.signals.in_process_bus import InProcessSignalPublisher
from trading_engine.adapters.sql.connections import connect_sqlite
from trading_engine.adapters.sql.migrations import migrate_sqlite
from trading_engine.adapters.sql.strategy_tables import SqliteStrategyTables
from trading_engine.adapters.strategies.registry import create_strategy
from trading_engine.app.strategy.loop import StrategyLoop
from trading_engine.domain.values import Timeframe

START = datetime(2025, 7, 1, 21, 0, tzinfo=UTC)
TIMEFRAMES = [Timeframe("1m"), Timeframe("5m"), Timeframe("15m")]
TRADES = list(synthetic_trades(start=START, seed=11, count=15000))


def make_log() -> InProcessLog:
    log = InProcessLog()
    for trade in TRADES:
        log.append("md:trade", entry_fields(trade))
    log.append("md:trade", {"exchange": "gmo", "payload": "{not json"})  # one bad entry
    return log


def make_loop(log: InProcessLog, db: Path, batch_size: int = 97) -> StrategyLoop:
    conn = connect_sqlite(db)
    migrate_sqlite(conn)
    tables = SqliteStrategyTables(conn)
    source = InProcessSource(
        log,
        ["md:trade", "md:orderbook", "md:ticker"],
        "trading-engine-strategy",
        "engine-1",
        "md:dead-letter",
    )
    return StrategyLoop(
        source,
        tables,
        tables,
        InProcessSignalPublisher(log),
        lambda _e, _s: create_strategy("moving_average_cross", fast_window=5, slow_window=20),
        TIMEFRAMES,
        Timeframe("1m"),
        SystemClock(),
        batch_size=batch_size,
        block_ms=0,
        tick_grace=None,
    )


def table(db: Path, query: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


# Its tests share a module-scoped fixture: one worker makes it once (ops/test.sh, xdist).
pytestmark = pytest.mark.xdist_group("strategy_loop_recovery")
BARS = "SELECT exchange, symbol, timeframe, timestamp, open, high, low, close, volume FROM ohlcv"
SIGNALS = "SELECT signal_id, action, price_ref, timestamp FROM signals ORDER BY timestamp"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    db = tmp_path_factory.mktemp("clean") / "engine.sqlite3"
    log = make_log()
    stats = make_loop(log, db).run_to_end()
    return {
        "bars": sorted(table(db, BARS)),
        "signals": table(db, SIGNALS),
        "stream": [
            f[b"signal_id"] if b"signal_id" in f else f["signal_id"]
            for _, f in log.entries("signal:gmo")
        ],
        "stats": stats,
        "log": log,
    }


def test_uninterrupted_run_settles_everything(uninterrupted: dict) -> None:
    stats, log = uninterrupted["stats"], uninterrupted["log"]
    assert stats.trades == len(TRADES)
    assert len(uninterrupted["signals"]) >= 4  # the synthetic market has crosses
    assert len(uninterrupted["stream"]) == len(uninterrupted["signals"])
    assert log.pending("md:trade", "trading-engine-strategy") == []
    assert log.length("md:dead-letter") == 1
    # every 1m interval from the first trade to the last has exactly one bar
    minutes = [r for r in uninterrupted["bars"] if r[2] == "1m"]
    span = (TRADES[-1].timestamp - TRADES[0].timestamp).total_seconds() / 60
    assert abs(len(minutes) - span) <= 2


@pytest.mark.parametrize("crash_after_batches", [1, 5, 17, 40, 77, 130])
def test_crash_and_restart_gives_the_same_bars_and_signals(
    tmp_path: Path, uninterrupted: dict, crash_after_batches: int
) -> None:
    db, log = tmp_path / "engine.sqlite3", make_log()
    first = make_loop(log, db)
    first.start()
    for _ in range(crash_after_batches):
        first.step()
    # crash: the first loop vanishes with its open bars; its unacknowledged entries stay pending
    pending = len(log.pending("md:trade", "trading-engine-strategy"))
    assert pending > 0
    second = make_loop(log, db, batch_size=113)
    stats = second.run_to_end()
    assert stats.recovered == pending
    assert sorted(table(db, BARS)) == uninterrupted["bars"]
    assert table(db, SIGNALS) == uninterrupted["signals"]
    stream = [
        f["signal_id"] if "signal_id" in f else f[b"signal_id"]
        for _, f in log.entries("signal:gmo")
    ]
    assert stream == uninterrupted["stream"]  # each signal published once, in order
    assert log.pending("md:trade", "trading-engine-strategy") == []


def test_replaying_the_same_entries_again_changes_nothing(
    tmp_path: Path, uninterrupted: dict
) -> None:
    db = tmp_path / "engine.sqlite3"
    make_loop(make_log(), db).run_to_end()
    # the same trades again (a new stream) onto the same tables: every bar they belong to is
    # closed and stored, so each is counted as late and nothing is merged or doubled
    again = make_loop(make_log(), db).run_to_end()
    assert again.late_trades == len(TRADES)
    assert again.signals_new == 0
    assert sorted(table(db, BARS)) == uninterrupted["bars"]
    assert table(db, SIGNALS) == uninterrupted["signals"]


def test_a_fresh_replay_is_deterministic(tmp_path: Path, uninterrupted: dict) -> None:
    db = tmp_path / "other.sqlite3"
    make_loop(make_log(), db, batch_size=1000).run_to_end()
    assert sorted(table(db, BARS)) == uninterrupted["bars"]
    assert table(db, SIGNALS) == uninterrupted["signals"]  # same ids, actions, prices, times
