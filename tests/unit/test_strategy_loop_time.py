"""The strategy loop acts on silence by the feed's clock, never the host's; it reads a backlog
before closing anything by the clock; it builds long gaps chunk by chunk and stops between
chunks; it refuses trades stamped in the future."""

from __future__ import annotations

import sqlite3
import tracemalloc
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from trading_engine.adapters.clocks.manual import ManualClock
from trading_engine.adapters.marketdata.gmo_messages import entry_fields
from trading_engine.adapters.marketdata.in_process import InProcessLog, InProcessSource
from trading_engine.adapters.marketdata.synthetic import synthetic_trades
from trading_engine.adapters.signals.in_process_bus import InProcessSignalPublisher
from trading_engine.adapters.sql.connections import connect_sqlite
from trading_engine.adapters.sql.migrations import migrate_sqlite
from trading_engine.adapters.sql.strategy_tables import SqliteStrategyTables
from trading_engine.adapters.strategies.registry import create_strategy
from trading_engine.app.strategy.loop import StrategyLoop
from trading_engine.domain.bars import bucket_start
from trading_engine.domain.market import Trade
from trading_engine.domain.values import Exchange, Side, Symbol, Timeframe

T0 = datetime(2025, 7, 1, 21, 0, tzinfo=UTC)  # the feed's time: a year before the host's
S1, M1, M5 = Timeframe("1s"), Timeframe("1m"), Timeframe("5m")
BARS = "SELECT timeframe, timestamp, open, high, low, close, volume FROM ohlcv"


def trade(at: datetime, price: int = 15_000_000) -> Trade:
    return Trade(Exchange("gmo"), Symbol("BTC_JPY"), Side.BUY, Decimal(price), Decimal("0.01"), at)


@dataclass
class Wall:
    """A monotonic clock moved by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def loop_over(
    log: InProcessLog,
    db: Path,
    *,
    timeframes=(M1, M5),
    wall: Wall | None = None,
    batch_size: int = 500,
    chunk_bars: int = 5000,
    host: datetime = datetime(2026, 12, 6, tzinfo=UTC),
) -> StrategyLoop:
    conn = connect_sqlite(db)
    migrate_sqlite(conn)
    tables = SqliteStrategyTables(conn)
    source = InProcessSource(
        log, ["md:trade", "md:orderbook", "md:ticker"], "g", "engine-1", "md:dead-letter"
    )
    return StrategyLoop(
        source,
        tables,
        tables,
        InProcessSignalPublisher(log),
        lambda _e, _s: create_strategy("moving_average_cross", fast_window=2, slow_window=4),
        list(timeframes),
        timeframes[0],
        ManualClock(host),
        batch_size=batch_size,
        block_ms=0,
        tick_grace=timedelta(seconds=2),
        future_tolerance=timedelta(minutes=5),
        monotonic=wall or Wall(),
        chunk_bars=chunk_bars,
    )


def append(log: InProcessLog, trades: Iterable[Trade]) -> None:
    for t in trades:
        log.append("md:trade", entry_fields(t))


def rows(db: Path, where: str = "") -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"{BARS} {where} ORDER BY timeframe, timestamp").fetchall()
    finally:
        conn.close()


def test_a_quiet_market_closes_bars_by_the_feeds_clock_not_the_hosts(tmp_path: Path) -> None:
    log, wall = InProcessLog(), Wall()
    append(log, [trade(T0 + timedelta(seconds=10)), trade(T0 + timedelta(seconds=30))])
    loop = loop_over(log, tmp_path / "e.sqlite3", wall=wall)  # the host is 17 months later
    loop.step()
    assert rows(tmp_path / "e.sqlite3") == []  # the host's clock closes nothing
    wall.now += 31  # the feed is at 21:01:01: not yet past the end plus the grace
    loop.step()
    assert rows(tmp_path / "e.sqlite3") == []
    wall.now += 1.5  # 21:01:02.5
    loop.step()
    assert [r[:2] for r in rows(tmp_path / "e.sqlite3")] == [("1m", "2025-07-01 21:00:00")]
    wall.now += 4 * 60  # four quiet minutes later: flat bars, and the 5m bar
    loop.step()
    closed = [r[:2] for r in rows(tmp_path / "e.sqlite3")]
    assert closed[-1] == ("5m", "2025-07-01 21:00:00")
    assert [c for c in closed if c[0] == "1m"][-1] == ("1m", "2025-07-01 21:04:00")
    assert loop.stats.late_trades == 0


def test_a_backlog_is_read_before_the_clock_closes_anything(tmp_path: Path) -> None:
    trades = list(synthetic_trades(start=T0, seed=3, count=3000))
    log, wall = InProcessLog(), Wall()
    append(log, trades)
    loop = loop_over(log, tmp_path / "e.sqlite3", wall=wall, batch_size=100)
    loop.start()
    while loop.step():
        wall.now += 600  # each batch "takes" ten minutes: far past every open bar's end
    assert loop.stats.late_trades == 0
    assert loop.stats.trades == 3000
    # the same bars as the trades alone give (a replay that ends: close what is open)
    replay = loop_over(log := InProcessLog(), tmp_path / "r.sqlite3", wall=Wall())
    append(log, trades)
    replay.tick_grace = None
    replay.run_to_end()
    last_start = "2025-07-01 21:20:00"  # the last 5m bucket: still open in the live loop
    where = f"WHERE timestamp < '{last_start}'"
    assert rows(tmp_path / "e.sqlite3", where) == rows(tmp_path / "r.sqlite3", where)


def test_a_trade_stamped_in_the_future_is_refused_and_counted(tmp_path: Path) -> None:
    host = T0 + timedelta(hours=1)
    log = InProcessLog()
    append(
        log,
        [
            trade(T0 + timedelta(seconds=1)),
            trade(host + timedelta(minutes=6), price=99_000_000),  # beyond the 5 min tolerance
            trade(host + timedelta(minutes=4)),  # a skewed clock, within it: fine
        ],
    )
    loop = loop_over(log, tmp_path / "e.sqlite3", host=host)
    loop.run_to_end()
    assert (loop.stats.future_trades, loop.stats.trades, loop.stats.late_trades) == (1, 2, 0)
    assert max(r[3] for r in rows(tmp_path / "e.sqlite3")) == "15000000"  # its price is nowhere


def test_a_year_long_gap_is_built_in_chunks_and_a_stop_comes_between_two(tmp_path: Path) -> None:
    log = InProcessLog()
    append(log, [trade(T0), trade(T0 + timedelta(days=365))])
    loop = loop_over(log, tmp_path / "e.sqlite3", timeframes=(S1, M1, M5), chunk_bars=2000)
    chunks = 0

    def stop_after_three() -> bool:  # the third look at the flag: at a chunk boundary
        nonlocal chunks
        chunks += 1
        return chunks >= 3

    tracemalloc.start()
    loop.run(stop_after_three)  # 31.5 million 1s bars in the gap: a chunk or two, then stop
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 30 * 2**20  # one chunk's worth, not the gap's (31.5M bars would be ~10 GB)
    stored = len(rows(tmp_path / "e.sqlite3"))
    assert 2000 <= stored <= 3 * 2000
    assert loop.stats.acknowledged == 0  # nothing of the interrupted batch: it comes back


def test_a_gap_interrupted_again_and_again_ends_as_if_never_interrupted(tmp_path: Path) -> None:
    trades = [trade(T0), trade(T0 + timedelta(hours=3), price=15_000_100)]
    trades += [trade(T0 + timedelta(hours=3, seconds=5), price=15_000_200)]
    cut_log, whole_log = InProcessLog(), InProcessLog()
    append(cut_log, trades)
    append(whole_log, trades)

    def loop(log: InProcessLog, db: Path) -> StrategyLoop:
        made = loop_over(log, db, timeframes=(S1, M1, M5), chunk_bars=1000)
        made.tick_grace = None  # bars close on later trades only, as in a replay
        return made

    def stop_at_the_third_check(checks=None):
        checks = iter([False, False, False])
        return lambda: next(checks, True)

    stored = []
    for _ in range(4):  # stopped at a chunk boundary, then a new process
        loop(cut_log, tmp_path / "cut.sqlite3").run(stop_at_the_third_check())
        stored.append(len(rows(tmp_path / "cut.sqlite3")))
    loop(cut_log, tmp_path / "cut.sqlite3").run_to_end()
    loop(whole_log, tmp_path / "whole.sqlite3").run_to_end()
    # each run went on where the last one stopped
    assert stored == sorted(set(stored))
    assert stored[-1] < len(rows(tmp_path / "whole.sqlite3"))
    assert rows(tmp_path / "cut.sqlite3") == rows(tmp_path / "whole.sqlite3")
    assert len(rows(tmp_path / "whole.sqlite3", "WHERE timeframe = '1s'")) == 3 * 3600 + 6


class Backlog:
    """A source whose entries entered their stream `age` seconds before they are read."""

    def __init__(self, source: InProcessSource, wall: Wall, age: float) -> None:
        self.source, self.wall, self.age = source, wall, age

    def recover(self):
        return self.source.recover()

    def read(self, max_count: int, block_ms: int):
        entries = self.source.read(max_count, block_ms)
        return [replace(e, entered_at=self.wall() - self.age) for e in entries]

    def ack(self, entries) -> None:
        self.source.ack(entries)

    @property
    def stats(self):
        return self.source.stats

    def close(self) -> None:
        self.source.close()


def signal_ages(log: InProcessLog) -> list[float]:
    return [float(fields["age_at_publish"]) for _, fields in log.entries("signal:gmo")]


def test_a_signal_is_as_old_as_the_engines_delay_not_the_markets_silence(tmp_path: Path) -> None:
    # A golden cross on the bar of 21:05 (2/4 bars), then 24 silent minutes: the trade of
    # 21:30 closes that bar. The signal's age is how late the engine was, not the silence.
    prices = [100, 99, 98, 97, 96, 110]
    trades = [trade(T0 + timedelta(minutes=n, seconds=5), p) for n, p in enumerate(prices)]
    trades.append(trade(T0 + timedelta(minutes=30), 111))
    for backlog, ages in ((0.0, (0.0, 1.0)), (600.0, (600.0, 601.0))):
        log, wall = InProcessLog(), Wall()
        append(log, trades)
        loop = loop_over(log, tmp_path / f"e{backlog}.sqlite3", timeframes=(M1,), wall=wall)
        loop.source = Backlog(loop.source, wall, backlog)
        loop.step()
        (age,) = signal_ages(log)
        assert ages[0] <= age < ages[1], backlog


def test_a_replay_published_twice_is_late_the_second_time_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """The second copy of a trade whose bars are closed is late: counted, acknowledged,
    never merged. (A copy of a trade whose bar is still open merges: a trades feed carries no
    trade id to tell a repeated print from a new one.)"""
    trades = list(synthetic_trades(start=T0, seed=8, count=2000))
    log = InProcessLog()
    append(log, trades)
    loop = loop_over(log, tmp_path / "e.sqlite3")
    loop.tick_grace = None
    loop.start()
    while loop.step():
        pass
    before = rows(tmp_path / "e.sqlite3")
    closed_until = bucket_start(trades[-1].timestamp, M5)  # the last 5m bar is still open
    append(log, trades)  # the same file replayed again into the same stream
    while loop.step():
        pass
    assert rows(tmp_path / "e.sqlite3") == before
    assert loop.stats.late_trades == sum(t.timestamp < closed_until for t in trades) > 1500
    assert loop.stats.trades == 4000
