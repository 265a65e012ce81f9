"""A live feed, stamped now, never makes a trade late (issue 14): not when the engine is
killed (SIGKILL) again and again, during start-up too, while trades keep arriving; not when
the host's clock is a minute ahead of or behind the exchange's.

The feed is a thread publishing trades stamped with the exchange's time (here: this test's
clock) in bursts with quiet spells of a few seconds, so the engine closes bars both ways: on
the next trade, and by the feed's clock when trading goes quiet. The reference is every trade
the stream holds, built into bars in stream order: a trade lost, doubled or counted late would
make a stored bar differ from it.

Before issue 14 a restart rebuilt the open bar, closed it by the host's clock, and only then
read the trades that had piled up while the engine was down: 121 late trades in 50 kills.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import libfaketime
import psycopg
import pytest
import redis
from psycopg import sql

from support.cli import COMMAND
from support.engine_output import EngineProcess
from support.engine_process import wait_until
from support.strategy_engine import (
    private_schemas,
    stop_for_report,
    strategy_env,
    strategy_lag,
)
from trading_engine.adapters.marketdata.gmo_messages import parse_entry
from trading_engine.adapters.marketdata.stream_writer import trade_fields
from trading_engine.domain.bars import MultiTimeframeBars, bucket_start
from trading_engine.domain.market import Trade
from trading_engine.domain.values import Exchange, Side, Symbol, Timeframe

pytestmark = pytest.mark.postgres
TIMEFRAMES = ("1s", "5s")  # two timeframes with many bars each in under a minute


class LiveFeed(threading.Thread):
    """Trades stamped now into some streams: bursts of ~40 trades/s, quiet spells of 2.5-4 s."""

    def __init__(self, client: redis.Redis, streams: list[str], seconds: float, seed: int):
        super().__init__(daemon=True)
        self.client, self.streams, self.seconds = client, streams, seconds
        self.random = random.Random(seed)
        self.published = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        price, ends = 15_000_000, time.monotonic() + self.seconds
        quiet_at = time.monotonic() + self.random.uniform(3, 7)
        while time.monotonic() < ends and not self.stopped.is_set():
            if time.monotonic() > quiet_at:
                time.sleep(self.random.uniform(2.5, 4.0))  # trading goes quiet
                quiet_at = time.monotonic() + self.random.uniform(3, 7)
            price += self.random.randint(-500, 500)
            trade = Trade(
                Exchange("gmo"),
                Symbol("BTC_JPY"),
                self.random.choice([Side.BUY, Side.SELL]),
                Decimal(price),
                Decimal(self.random.randint(1, 50)) / 10_000,
                datetime.now(UTC),  # the exchange's time: now
            )
            with self.client.pipeline(transaction=False) as pipe:
                for stream in self.streams:
                    pipe.xadd(stream, trade_fields(trade))
                pipe.execute()
            self.published += 1
            time.sleep(self.random.expovariate(40))


def environment(pg_url: str, schema: str, redis_url: str, prefix: str) -> dict[str, str]:
    return strategy_env(
        pg_url,
        schema,
        redis_url,
        prefix,
        OHLCV_TIMEFRAMES=",".join(TIMEFRAMES),
        STRATEGY_TIMEFRAME="1s",
        STRATEGY_BATCH_SIZE="50",
        LOG_FORMAT="json",
    )


@pytest.fixture
def schemas(pg_url: str) -> Iterator[list[str]]:
    with private_schemas(pg_url, 2) as names:
        yield names


def reference(client: redis.Redis, stream: str) -> tuple[dict[str, list[tuple]], datetime]:
    """Bars of every trade in the stream, in stream order; and the last trade's time."""
    book = MultiTimeframeBars(
        Exchange("gmo"), Symbol("BTC_JPY"), [Timeframe(t) for t in TIMEFRAMES]
    )
    bars: dict[str, list[tuple]] = {tf: [] for tf in TIMEFRAMES}
    last = None
    for _, fields in client.xrange(stream):
        trade = parse_entry(stream, fields)
        assert isinstance(trade, Trade)
        last = trade.timestamp if last is None else max(last, trade.timestamp)
        update = book.add(trade)
        assert not update.late  # stamped now, in order: never late in the reference
        for bar in update.bars():
            bars[str(bar.timeframe)].append(row(bar.timestamp, bar))
    assert last is not None
    return bars, last


def row(start: datetime, bar) -> tuple:
    return (start.replace(tzinfo=None), bar.open, bar.high, bar.low, bar.close, bar.volume)


def stored(pg_url: str, schema: str, last: datetime) -> dict[str, list[tuple]]:
    """The engine's bars before the last trade's (still open when the feed stopped)."""
    with psycopg.connect(pg_url) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        found = {}
        for tf in TIMEFRAMES:
            bound = bucket_start(last, Timeframe(tf)).replace(tzinfo=None)
            found[tf] = [
                (at, *(Decimal(str(v)) for v in values))
                for at, *values in conn.execute(
                    "SELECT timestamp, open, high, low, close, volume FROM ohlcv "
                    "WHERE timeframe = %s AND timestamp < %s ORDER BY timestamp",
                    (tf, bound),
                )
            ]
    return found


def last_second_stored(pg_url: str, schema: str, last: datetime) -> bool:
    with psycopg.connect(pg_url) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        found = conn.execute(
            "SELECT count(*) FROM ohlcv WHERE timeframe = '1s' AND timestamp = %s",
            (bucket_start(last, Timeframe("1s")).replace(tzinfo=None),),
        ).fetchone()
    return found == (1,)


def late_in_logs(*outputs: bytes) -> int:
    """Late trades the engine logged (a killed run prints no report, its log lines remain)."""
    late = 0
    for output in outputs:
        for line in output.decode(errors="replace").splitlines():
            if line.startswith("{") and "late trades counted" in line:
                late += int(json.loads(line)["message"].split()[0])
    return late


def test_sigkill_again_and_again_with_the_feed_arriving_makes_no_trade_late(
    tmp_path: Path, pg_url: str, schemas: list[str], redis_url: str, redis_prefix: str
) -> None:
    env = environment(pg_url, schemas[0], redis_url, redis_prefix)
    stream = f"{redis_prefix}md:trade"
    client = redis.Redis.from_url(redis_url)
    chance = random.Random(14)
    feed = LiveFeed(client, [stream], seconds=45, seed=14)
    outputs: list[bytes] = []
    engine = EngineProcess([COMMAND, "run"], env=env, cwd=tmp_path)
    started = time.monotonic()
    kills = in_start_up = 0
    try:
        feed.start()
        while feed.is_alive():
            early = chance.random() < 0.3  # a third of the kills land while it starts
            time.sleep(chance.uniform(0.1, 0.6) if early else chance.uniform(1.5, 5.0))
            if not feed.is_alive():
                break
            engine.kill()  # SIGKILL
            out, _ = engine.communicate(timeout=30)
            outputs.append(out)
            kills, in_start_up = kills + 1, in_start_up + early
            time.sleep(chance.uniform(0.3, 2.5))  # down: trades pile up in the stream
            engine = EngineProcess([COMMAND, "run"], env=env, cwd=tmp_path)
            started = time.monotonic()
        wait_until(
            lambda: strategy_lag(client, stream) == 0, 60, "the engine to read the whole feed"
        )
        # The last one stops with SIGTERM (to report): not before Python has started it (a
        # signal before the interpreter runs the entry point kills it, handler or not).
        time.sleep(max(0.0, started + 5 - time.monotonic()))
        report, out = stop_for_report(engine)
        outputs.append(out)
        expected, last = reference(client, stream)
    finally:
        feed.stopped.set()
        if engine.poll() is None:
            engine.kill()
        client.close()
    assert kills >= 8
    assert late_in_logs(*outputs) == 0
    assert report["late_trades"] == 0
    assert stored(pg_url, schemas[0], last) == expected
    print(
        f"\nlive feed, {feed.published} trades stamped now: {kills} SIGKILLs ({in_start_up} at "
        f"start-up); 0 late, 0 lost, 0 doubled: {len(expected['1s'])} 1s and "
        f"{len(expected['5s'])} 5s bars equal the trades' own"
    )


def test_a_host_clock_a_minute_off_makes_no_trade_late(
    tmp_path: Path, pg_url: str, schemas: list[str], redis_url: str, redis_prefix: str
) -> None:
    loaded, preload = libfaketime.get_reload_information()
    assert not loaded or preload  # the vendored library is there to preload
    engines, streams = {}, {}
    client = redis.Redis.from_url(redis_url)
    try:
        for schema, offset in zip(schemas, ("+60s", "-60s"), strict=True):
            prefix = f"{redis_prefix}{'ahead' if offset[0] == '+' else 'behind'}:"
            streams[offset] = f"{prefix}md:trade"
            env = {
                **environment(pg_url, schema, redis_url, prefix),
                **preload,
                "FAKETIME": offset,  # the engine's host clock only; the feed's is right
            }
            engines[offset] = EngineProcess([COMMAND, "run"], env=env, cwd=tmp_path)
        feed = LiveFeed(client, list(streams.values()), seconds=25, seed=60)
        feed.start()
        feed.join()
        quiet = time.monotonic()
        reports, closed_after = {}, {}
        for (offset, stream), schema in zip(streams.items(), schemas, strict=True):
            wait_until(lambda s=stream: strategy_lag(client, s) == 0, 60, f"the engine at {offset}")
            # Trading has gone quiet: the feed's clock closes the last trade's 1s bar (its
            # end plus the 2 s grace) with no later trade to close it.
            _, last = reference(client, stream)
            wait_until(
                lambda s=schema, t=last: last_second_stored(pg_url, s, t), 10, "a quiet close"
            )
            closed_after[offset] = time.monotonic() - quiet
            reports[offset] = stop_for_report(engines[offset])
        expected = {offset: reference(client, stream) for offset, stream in streams.items()}
    finally:
        for engine in engines.values():
            if engine.poll() is None:
                engine.kill()
        client.close()
    for (offset, (report, out)), schema in zip(reports.items(), schemas, strict=True):
        bars, last = expected[offset]
        assert report["late_trades"] == 0, offset
        assert report["future_trades"] == 0, offset
        assert late_in_logs(out) == 0, offset
        assert stored(pg_url, schema, last) == bars, offset
    print(
        f"\nhost clock +60 s and -60 s, {feed.published} trades stamped now: 0 late, bars "
        f"({len(bars['1s'])} 1s) equal the trades' own; after the last trade the quiet "
        f"market's last 1s bar closed within {max(closed_after.values()):.1f} s"
    )
