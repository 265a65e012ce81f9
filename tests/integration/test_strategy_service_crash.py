"""`trading-engine run` over a real Redis and PostgreSQL, SIGKILLed mid-stream many times:
afterwards no entry is lost and no bar or signal is doubled, and SIGTERM stops it cleanly.

The reference is the same loop over the in-process log and SQLite, never interrupted.
"""

from __future__ import annotations

import os
import random
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import redis

from support.cli import COMMAND
from support.engine_output import EngineProcess
from support.reference_run import assert_tables_equal, open_bar_trades, uninterrupted_run
from trading_engine.adapters.marketdata.stream_writer import publish_trades
from trading_engine.adapters.marketdata.synthetic import synthetic_trades

KILLS = 6
# Trades of a past day: bars close on later trades (the feed's clock gets an hour of grace),
# so the result cannot depend on how long the kills and restarts take.
START = datetime(2025, 3, 3, tzinfo=UTC)
TRADES = list(synthetic_trades(start=START, seed=5, count=15000))
SETTINGS = {
    "OHLCV_TIMEFRAMES": "1m,5m",
    "BAR_CLOSE_GRACE_SECONDS": "3600",  # bars close on later trades: results cannot race
    "STRATEGY_TIMEFRAME": "1m",
    "STRATEGY_NAME": "moving_average_cross",
    "MA_FAST_WINDOW": "3",
    "MA_SLOW_WINDOW": "8",
    "STRATEGY_BATCH_SIZE": "7",
    "CONSUMER_NAME": "engine-1",
}


def start_engine(env: dict[str, str]) -> EngineProcess:
    return EngineProcess([COMMAND, "run"], env=env, text=True)


def caught_up(client: redis.Redis, stream: str) -> bool:
    groups = client.xinfo_groups(stream)
    return bool(groups) and groups[0].get("lag") == 0


@pytest.mark.postgres
def test_sigkill_many_times_loses_and_doubles_nothing(
    tmp_path: Path, pg_url: str, pg_schema: str, redis_url: str, redis_prefix: str
) -> None:
    prefix = redis_prefix
    client = redis.Redis.from_url(redis_url)
    stream = f"{prefix}md:trade"
    env = {
        **os.environ,
        **SETTINGS,
        "ENABLE_STRATEGY": "true",
        "ENABLE_EXECUTION": "false",
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"{pg_url}?schema={pg_schema}",
        "STREAM_PREFIX": prefix,
        "LOG_LEVEL": "WARNING",
    }
    # The market arrives in chunks while the engine is killed at random moments: some kills
    # land mid-batch, every restart finds pending entries of open bars to recover.
    rng = random.Random(1)
    size = len(TRADES) // KILLS + 1
    chunks = [TRADES[i : i + size] for i in range(0, len(TRADES), size)]
    kills, killed_with_backlog = 0, 0
    for number, chunk in enumerate(chunks):
        engine = start_engine(env)
        time.sleep(0.8)  # start-up: recovery of the previous run's pending entries
        kill_at = rng.randrange(5, 20)
        for piece, start in enumerate(range(0, len(chunk), 100)):
            publish_trades(client, chunk[start : start + 100], stream=stream)
            if number == 1 and piece == 0:
                for bad in ({"exchange": "gmo", "payload": "{oops"}, {"payload": "{}"}):
                    client.xadd(stream, bad)
            time.sleep(0.01)
            if piece == kill_at:
                killed_with_backlog += not caught_up(client, stream)
                engine.send_signal(signal.SIGKILL)
        if engine.poll() is None and engine.returncode is None:
            engine.send_signal(signal.SIGKILL)
        engine.wait(10)
        if engine.returncode != -signal.SIGKILL:
            pytest.fail(f"engine exited by itself: {engine.communicate()[1][-2000:]}")
        kills += 1
    engine = start_engine(env)
    deadline = time.monotonic() + 60
    while not caught_up(client, stream) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # let it finish the batch it read last
    engine.send_signal(signal.SIGTERM)
    out, err = engine.communicate(timeout=30)
    assert engine.returncode == 0, err[-3000:]
    final_stats = orjson.loads(out.strip().splitlines()[-1])["strategy"]

    # the reference: the same entries, never interrupted, in-process with SQLite
    reference = uninterrupted_run(SETTINGS, TRADES, tmp_path)
    try:
        stored = assert_tables_equal(pg_url, pg_schema, reference)
        assert len(stored) >= 5
        published = [f[b"signal_id"].decode() for _, f in client.xrange(f"{prefix}signal:gmo")]
        assert sorted(published) == sorted(reference.signal_ids)  # once each, none lost
        dead = client.xlen(f"{prefix}md:dead-letter")
        assert dead == 2
        pending = client.xpending(stream, "trading-engine-strategy")["pending"]
        # only the trades of the bars still open (the last 1m/5m bars) wait, unacknowledged
        assert pending == open_bar_trades(TRADES)
    finally:
        client.close()
    assert kills == KILLS
    print(
        f"\nSIGKILL survived: {kills} ({killed_with_backlog} with unread entries left); "
        f"entries {len(TRADES) + 2}; signals {len(stored)} "
        f"(duplicates 0); bars equal to the uninterrupted run; final run recovered "
        f"{final_stats['recovered']} pending entries"
    )
