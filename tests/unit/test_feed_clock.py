"""The feed's clock: the latest exchange time seen plus the wall time since it entered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from trading_engine.domain.feed_clock import FeedClock

T = datetime(2025, 7, 1, 21, 0, tzinfo=UTC)


def test_it_knows_nothing_before_a_trade() -> None:
    clock = FeedClock()
    assert clock.now(100.0) is None


def test_it_runs_on_from_the_latest_trade_by_wall_time() -> None:
    clock = FeedClock()
    clock.observe(T, entered_at=1000.0)
    assert clock.now(1000.0) == T
    assert clock.now(1012.5) == T + timedelta(seconds=12.5)


def test_a_trade_from_a_backlog_counts_as_old_as_its_entry() -> None:
    clock = FeedClock()
    # read at wall 5000, but it entered the stream an hour before (the engine was down)
    clock.observe(T, entered_at=5000.0 - 3600)
    assert clock.now(5000.0) == T + timedelta(hours=1)


def test_an_older_trade_read_later_never_moves_it_back() -> None:
    clock = FeedClock()
    clock.observe(T, entered_at=10.0)
    clock.observe(T - timedelta(days=365), entered_at=20.0)  # a replay of last year, read late
    clock.observe(T + timedelta(seconds=1), entered_at=11.5)  # arrived half a second late
    assert clock.now(30.0) == T + timedelta(seconds=20)
    clock.observe(T + timedelta(days=365), entered_at=40.0)  # a year later: the trades say so
    assert clock.now(40.0) == T + timedelta(days=365)


def test_the_host_calendar_plays_no_part() -> None:
    # the wall values are any monotonic scale: only differences count
    one, other = FeedClock(), FeedClock()
    one.observe(T, entered_at=0.0)
    other.observe(T, entered_at=9_000_000.0)
    assert one.now(42.0) == other.now(9_000_042.0)
