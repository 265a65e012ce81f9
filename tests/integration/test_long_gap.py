"""Bounded work per trade (issue 14): two trades a year apart on 1s bars are 31.5 million flat
bars. The engine makes and stores them chunk by chunk, so its memory stays that of a chunk,
and a SIGTERM stops it within seconds, while it builds them and while a restart takes them up
again; what it stored is kept and the next start goes on from there.

Before issue 14 one step built every bar of the gap in a list before storing any (the
bundled sample replayed into `run` grew past 4.8 GB and ignored SIGTERM for 8 minutes)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql

from support.cli import COMMAND, run_cli
from support.engine_output import EngineProcess
from support.engine_process import wait_until
from trading_engine.app.bootstrap.strategy import STRATEGY_GROUP

pytestmark = pytest.mark.postgres
TRADES = """symbol,side,size,price,timestamp
BTC_JPY,BUY,0.01,15000000,2024-11-01 09:00:00.000
BTC_JPY,SELL,0.02,15100000,2025-11-01 09:00:00.000
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def stored_bars(pg_url: str, schema: str) -> int:
    with psycopg.connect(pg_url) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        try:
            return int(conn.execute("SELECT count(*) FROM ohlcv").fetchone()[0])
        except psycopg.errors.UndefinedTable:
            return 0


def second_bars(pg_url: str, schema: str) -> tuple[int, int]:
    """1s bars stored, and the seconds they span (equal: no hole, no double)."""
    with psycopg.connect(pg_url) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        count, span = conn.execute(
            "SELECT count(*), EXTRACT(EPOCH FROM max(timestamp) - min(timestamp)) + 1 "
            "FROM ohlcv WHERE timeframe = '1s'"
        ).fetchone()
    return int(count), int(span)


def stop_within(engine: EngineProcess, seconds: float) -> tuple[float, dict]:
    asked = time.monotonic()
    engine.send_signal(signal.SIGTERM)
    out, err = engine.communicate(timeout=60)
    took = time.monotonic() - asked
    assert engine.returncode == 0, err.decode()[-3000:]
    assert took < seconds, f"SIGTERM took {took:.1f} s"
    return took, json.loads(out.decode().strip().splitlines()[-1])


def test_trades_a_year_apart_on_1s_bars_take_bounded_memory_and_stop_promptly(
    tmp_path: Path, pg_url: str, pg_schema: str, redis_url: str, redis_prefix: str
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "DATABASE_URL": f"{pg_url}?schema={pg_schema}",
        "REDIS_URL": redis_url,
        "STREAM_PREFIX": redis_prefix,
        "ENABLE_STRATEGY": "true",
        "ENABLE_EXECUTION": "false",
        "OHLCV_TIMEFRAMES": "1s,1m,5m",
        "STRATEGY_TIMEFRAME": "1m",
        "LOG_LEVEL": "WARNING",
    }
    (tmp_path / "trades.csv").write_text(TRADES)
    replay = run_cli("replay", "--file", "trades.csv", env=env, cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    client = redis.Redis.from_url(redis_url)
    engine = EngineProcess([COMMAND, "run"], env=env, cwd=tmp_path)
    try:
        wait_until(lambda: stored_bars(pg_url, pg_schema) > 20_000, 120, "the gap to be built")
        samples, started, counts = [], time.monotonic(), []
        while time.monotonic() - started < 8:
            samples.append(rss_mb(engine.pid))
            counts.append(stored_bars(pg_url, pg_schema))
            time.sleep(0.5)
        first_stop, report = stop_within(engine, 10)
        first = stored_bars(pg_url, pg_schema)

        # A new process takes the unacknowledged second trade up again: the gap goes on from
        # where it stopped, during start-up, and a stop there is as prompt.
        engine = EngineProcess([COMMAND, "run"], env=env, cwd=tmp_path)
        wait_until(lambda: stored_bars(pg_url, pg_schema) > first + 20_000, 120, "more bars")
        second_stop, _ = stop_within(engine, 10)
        second = stored_bars(pg_url, pg_schema)
        pending = client.xpending(f"{redis_prefix}md:trade", STRATEGY_GROUP)["pending"]
    finally:
        if engine.poll() is None:
            engine.kill()
        client.close()
    growth = max(samples) - samples[0]
    assert counts[-1] > counts[0]  # bars were being stored while memory was sampled
    assert growth < 60, f"RSS grew {growth:.0f} MB while building the gap: {samples}"
    assert report["strategy"]["trades"] == 2
    assert report["strategy"]["late_trades"] == 0
    assert second > first
    count, span = second_bars(pg_url, pg_schema)
    assert count == span  # one bar per second from the first trade on: no hole, no double
    # Neither trade is acknowledged: the batch that holds them was cut short twice. The next
    # start finds the first one's bars stored (it settles it) and goes on with the second.
    assert pending == 2
    print(
        f"\nyear gap on 1s bars: RSS {samples[0]:.0f}–{max(samples):.0f} MB while storing "
        f"{(counts[-1] - counts[0]) / 8:.0f} bars/s; SIGTERM honoured in {first_stop:.1f} s "
        f"building the gap and {second_stop:.1f} s taking it up at start-up; {second} bars "
        f"stored, contiguous"
    )
