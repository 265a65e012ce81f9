"""`trading-engine run` while its servers go away: Redis killed and restarted mid-stream, and
PostgreSQL down for a while. The engine waits and retries with backoff, reports not-ready on
/readyz meanwhile, resumes by itself, and afterwards nothing is lost or doubled: bars and
signals equal an uninterrupted in-process run over the same trades.

Both servers are private instances (spare ports, own directories); the shared ones are never
touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import redis

from support.cli import COMMAND
from support.engine_process import wait_until
from support.private_servers import PrivatePostgres, PrivateRedis, free_port
from support.reference_run import assert_tables_equal, uninterrupted_run
from trading_engine.adapters.eventstore.postgres import postgres_event_store
from trading_engine.adapters.marketdata.stream_writer import publish_trades
from trading_engine.adapters.marketdata.synthetic import synthetic_trades
from trading_engine.app.execution.reconciliation import orders_in_log
from trading_engine_standins.gmo import GmoStandIn

pytestmark = pytest.mark.postgres

# A past day, replayed: bars close by the next trade only (the feed's clock gets an hour of
# grace), so the outcome cannot depend on how long the outage and the retries take.
START = datetime(2025, 3, 3, tzinfo=UTC)
TRADES = list(synthetic_trades(start=START, seed=8, count=12000))
SETTINGS = {
    "OHLCV_TIMEFRAMES": "1m,5m",
    "BAR_CLOSE_GRACE_SECONDS": "3600",  # bars close on later trades: results cannot race
    "STRATEGY_TIMEFRAME": "1m",
    "STRATEGY_NAME": "moving_average_cross",
    "MA_FAST_WINDOW": "3",
    "MA_SLOW_WINDOW": "8",
    "STRATEGY_BATCH_SIZE": "50",
    "CONSUMER_NAME": "engine-1",
}


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.close()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    server.start()
    yield server
    server.close()


def readiness(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return answer.status, orjson.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())
    except OSError:
        return 0, {}


def engine(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"engine-{time.monotonic_ns()}.log"
    with log.open("wb") as out:  # a file, not a pipe: nobody reads it while it runs
        process = subprocess.Popen(
            [COMMAND, "run"], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT
        )
    return process, log


def stop(process: subprocess.Popen[bytes], log: Path) -> dict:
    process.send_signal(signal.SIGTERM)
    process.wait(60)
    text = log.read_text()
    assert process.returncode == 0, text[-3000:]
    return orjson.loads(text.strip().splitlines()[-1])


def group_caught_up(client: redis.Redis, stream: str) -> bool:
    try:
        groups = client.xinfo_groups(stream)
    except redis.RedisError:
        return False
    return bool(groups) and groups[0].get("lag") == 0


def assert_equals_uninterrupted_run(tmp_path: Path, database_url: str, schema: str) -> int:
    """Bars and signals as an uninterrupted in-process run over TRADES. Returns signals."""
    stored = assert_tables_equal(
        database_url, schema, uninterrupted_run(SETTINGS, TRADES, tmp_path)
    )
    assert len(stored) >= 5
    return len(stored)


@pytest.fixture
def standin(gmo_standin: Callable[..., GmoStandIn]) -> GmoStandIn:
    return gmo_standin("away-key", "away-secret", last_price=TRADES[0].price)


def both_modules(standin: GmoStandIn, redis_url: str, database_url: str, port: int) -> dict:
    """Strategy and execution in one process, orders to the stand-in, /readyz on `port`."""
    return {
        **os.environ,
        **SETTINGS,
        "ENABLE_STRATEGY": "true",
        "ENABLE_EXECUTION": "true",
        "REST_BASE_URL": standin.base_url,
        "API_KEY": "away-key",
        "API_SECRET": "away-secret",
        "ORDER_SIZE": "0.01",
        "ORDER_POLL_INTERVAL_SECONDS": "0.1",
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "HEALTH_PORT": str(port),
        "RETRY_MAX_BACKOFF_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
    }


def publisher(client: redis.Redis, stream: str, standin: GmoStandIn):
    """Publishes trades, and shows the stand-in their prices (market orders fill there)."""

    def publish(trades: list) -> None:
        for start in range(0, len(trades), 500):
            chunk = trades[start : start + 500]
            publish_trades(client, chunk, stream=stream)
            standin.set_last_price("BTC_JPY", chunk[-1].price)

    return publish


def assert_orders_once(database_url: str, schema: str, standin: GmoStandIn) -> str:
    """One order per (signal, leg), each sent once, none left unsettled. Returns figures."""
    store = postgres_event_store(database_url, schema=schema)
    try:
        orders = orders_in_log(store, "gmo")
    finally:
        store.close()
    placed = [o for o in orders if o.exchange_order_id is not None]
    per_signal = Counter((o.signal_id, o.leg) for o in orders)
    assert all(n == 1 for n in per_signal.values()), per_signal
    assert len(standin.exchange.orders) == len(placed)  # no order sent twice
    assert {str(i) for i in standin.exchange.orders} == {o.exchange_order_id for o in placed}
    assert not [o for o in orders if o.exchange_order_id is None and not o.is_terminal]
    assert len(orders) >= 3
    return f"orders {len(orders)} (at the exchange {len(placed)}, duplicates 0)"


def test_redis_killed_and_restarted_mid_stream(
    tmp_path: Path, pg_url: str, pg_schema: str, private_redis: PrivateRedis, standin: GmoStandIn
) -> None:
    health_port = free_port()
    env = both_modules(standin, private_redis.url, f"{pg_url}?schema={pg_schema}", health_port)
    client = redis.Redis.from_url(private_redis.url)
    stream = "md:trade"
    half = len(TRADES) // 2
    process, log = engine(env, tmp_path)
    try:
        wait_until(lambda: readiness(health_port)[0] == 200, 60, "the engine to be ready")
        publisher(client, stream, standin)(TRADES[:half])
        time.sleep(0.2)  # the engine is in the middle of the first half
        backlog = client.xinfo_groups(stream)[0]["lag"]
        private_redis.kill()
        client.close()
        wait_until(lambda: readiness(health_port)[0] == 503, 30, "/readyz to say not ready")
        _, body = readiness(health_port)
        assert not body["checks"]["redis"]["ok"], body
        time.sleep(2.0)  # a few retries while it is away
        assert process.poll() is None, log.read_text()[-3000:]
        private_redis.start()
        client = redis.Redis.from_url(private_redis.url)
        publisher(client, stream, standin)(TRADES[half:])
        report = catch_up_and_stop(client, "", health_port, process, log)
    finally:
        if process.poll() is None:
            process.kill()
        client.close()
    signals = assert_equals_uninterrupted_run(tmp_path, pg_url, pg_schema)
    published = client_signals(private_redis.url)
    assert sorted(published) == sorted(set(published))  # each published once
    assert len(published) == signals
    orders = assert_orders_once(pg_url, pg_schema, standin)
    print(
        f"\nRedis killed with {backlog} entries unread, restarted after ~2s: engine retried "
        f"{report['retries']} times, then resumed; entries {len(TRADES)}, lost 0, signals "
        f"{signals} (duplicates 0), {orders}, bars equal to the uninterrupted run"
    )
    assert report["retries"] >= 1


def client_signals(url: str) -> list[str]:
    client = redis.Redis.from_url(url)
    try:
        return [f[b"signal_id"].decode() for _, f in client.xrange("signal:gmo")]
    finally:
        client.close()


def test_postgresql_away_for_a_while(
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
    private_postgres: PrivatePostgres,
    standin: GmoStandIn,
) -> None:
    """Bars, signals, the event store (orders to the stand-in) and the read tables all live
    in the database that goes away."""
    health_port = free_port()
    schema = "engine"
    database_url = f"{private_postgres.url}?schema={schema}"
    env = {**both_modules(standin, redis_url, database_url, health_port),
           "STREAM_PREFIX": redis_prefix}  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    stream = f"{redis_prefix}md:trade"
    publish = publisher(client, stream, standin)
    third = len(TRADES) // 3
    process, log = engine(env, tmp_path)
    try:
        wait_until(lambda: readiness(health_port)[0] == 200, 60, "the engine to be ready")
        publish(TRADES[:third])
        time.sleep(0.2)  # the engine is in the middle of the first third
        private_postgres.stop("immediate")
        publish(TRADES[third : 2 * third])  # the market goes on: it waits in Redis
        wait_until(lambda: readiness(health_port)[0] == 503, 30, "/readyz to say not ready")
        _, body = readiness(health_port)
        assert not body["checks"]["postgresql"]["ok"], body
        time.sleep(3.0)
        assert process.poll() is None, log.read_text()[-3000:]
        private_postgres.start()
        publish(TRADES[2 * third :])
        report = catch_up_and_stop(client, redis_prefix, health_port, process, log)
    finally:
        if process.poll() is None:
            process.kill()
        client.close()
    signals = assert_equals_uninterrupted_run(tmp_path, private_postgres.url, schema)
    orders = assert_orders_once(private_postgres.url, schema, standin)
    print(
        f"\nPostgreSQL stopped (immediate) for ~3s mid-stream: engine retried "
        f"{report['retries']} times, then resumed; entries {len(TRADES)}, lost 0, signals "
        f"{signals} (duplicates 0), {orders}, bars equal to the uninterrupted run"
    )
    assert report["retries"] >= 1


def catch_up_and_stop(
    client: redis.Redis, prefix: str, health_port: int, process, log: Path
) -> dict:
    """Once every trade is read, every signal handled and /readyz is 200 again: SIGTERM."""
    wait_until(lambda: group_caught_up(client, f"{prefix}md:trade"), 90, "the engine to catch up")
    signals = f"{prefix}signal:gmo"
    wait_until(lambda: group_done(client, signals), 60, "the signals to be handled")
    wait_until(lambda: readiness(health_port)[0] == 200, 60, "ready again")
    time.sleep(1.0)  # the monitor's last polls
    return stop(process, log)


def group_done(client: redis.Redis, stream: str) -> bool:
    try:
        groups = client.xinfo_groups(stream)
    except redis.RedisError:
        return False
    return bool(groups) and groups[0]["lag"] == 0 and groups[0]["pending"] == 0
