"""`trading-engine run` with the Execution module, and the kill switch, as an operator runs
them: a real process, Redis, PostgreSQL and the stand-in GMO server."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from support.cli import COMMAND, run_cli
from support.engine_output import EngineProcess
from support.strategy_engine import strategy_lag
from trading_engine.adapters.eventstore.postgres import postgres_event_store
from trading_engine.adapters.projections.postgres import postgres_projection_store
from trading_engine.adapters.signals.redis_bus import RedisSignalPublisher
from trading_engine.app.execution.reconciliation import orders_in_log
from trading_engine.domain.models import Signal
from trading_engine.domain.order import order_id_for
from trading_engine.domain.values import OrderStatus
from trading_engine_standins.gmo import GmoStandIn

pytestmark = pytest.mark.postgres
EXECUTION = "trading-engine-execution"


@pytest.fixture
def standin(gmo_standin: Callable[..., GmoStandIn]) -> GmoStandIn:
    return gmo_standin("cli-key", "cli-secret")


def a_signal(signal_id: str) -> Signal:
    return Signal(
        signal_id=signal_id,
        exchange="gmo",
        symbol="BTC_JPY",
        strategy="moving_average_cross",
        action="enter_long",
        confidence=Decimal(1),
        price_ref=Decimal(5_000_000),
        timestamp=datetime.now(UTC),
        indicators={},
        meta={},
    )


def test_run_executes_signals_from_redis_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
    pg_url: str,
    pg_schema: str,
    redis_url: str,
    redis_prefix: str,
    standin: GmoStandIn,
) -> None:
    database_url = f"{pg_url}?schema={pg_schema}"
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "STREAM_PREFIX": redis_prefix,
        "ENABLE_STRATEGY": "false",
        "ENABLE_EXECUTION": "true",
        "REST_BASE_URL": standin.base_url,
        "API_KEY": "cli-key",
        "API_SECRET": "cli-secret",
        "ORDER_SIZE": "0.02",
        "ORDER_POLL_INTERVAL_SECONDS": "0.05",
    }
    client = redis.Redis.from_url(redis_url)
    publisher = RedisSignalPublisher(client, stream_prefix=f"{redis_prefix}signal:")
    publisher.publish(a_signal("cli-sig-1"))
    process = EngineProcess([COMMAND, "run"], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while standin.placements() < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert standin.placements() == 1
        time.sleep(0.5)  # the monitor's next poll records the fill
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        client.close()
    assert process.returncode == 0, err.decode()
    assert b'"signals":1' in out
    assert b"cli-secret" not in out + err
    store = postgres_event_store(pg_url, schema=pg_schema)
    try:
        order = store.get_order(order_id_for("cli-sig-1", 0))
        assert order.status is OrderStatus.FILLED
        assert store.find_position("gmo", "BTC_JPY").quantity == Decimal("0.02")
    finally:
        store.close()

    # the kill switch, from another command: the state is in the event store
    halted = run_cli("risk", "halt", "--reason", "desk says stop", env=env, cwd=tmp_path)
    assert halted.returncode == 0, halted.stderr
    assert "HALTED (desk says stop)" in halted.stdout
    status = run_cli("risk", "status", env=env, cwd=tmp_path)
    assert "HALTED" in status.stdout


def test_run_refuses_execution_without_credentials(tmp_path: Path, redis_url: str) -> None:
    env = {
        "API_KEY": None,
        "API_SECRET": None,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'e.sqlite3'}",
        "REDIS_URL": redis_url,
        "ENABLE_STRATEGY": "false",
        "ENABLE_EXECUTION": "true",
    }
    # `run` is the service: its own process, as it always is
    result = run_cli("run", env=env, cwd=tmp_path, process=True, timeout=60)
    assert result.returncode == 2
    assert "API_KEY and API_SECRET" in result.stderr
    assert "Traceback" not in result.stderr


def _consumed(client: redis.Redis, stream: str, group: str) -> int:
    """Entries the group has read and acknowledged."""
    for info in client.xinfo_groups(stream):
        if info["name"].decode() == group:
            return int(info["entries-read"] or 0) - int(info["pending"])
    return 0


def test_run_with_both_modules_in_one_process(
    tmp_path: Path,
    pg_url: str,
    pg_schema: str,
    redis_url: str,
    redis_prefix: str,
    standin: GmoStandIn,
) -> None:
    # A fast strategy on a replay makes a signal every few trades: the execution thread must
    # keep up with the strategy's output at GMO's rate limit (20 orders/s), not fall behind.
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "DATABASE_URL": f"{pg_url}?schema={pg_schema}",
        "REDIS_URL": redis_url,
        "STREAM_PREFIX": redis_prefix,
        "ENABLE_STRATEGY": "true",
        "ENABLE_EXECUTION": "true",
        "REST_BASE_URL": standin.base_url,
        "API_KEY": "cli-key",
        "API_SECRET": "cli-secret",
        "OHLCV_TIMEFRAMES": "1s,1m",
        "STRATEGY_TIMEFRAME": "1s",
        "MA_FAST_WINDOW": "2",
        "MA_SLOW_WINDOW": "3",
        "ORDER_TYPE": "MARKET",
        "MAX_POSITION_SIZE": "100",
        "MAX_CONSECUTIVE_LOSSES": "100000",
        "MAX_DRAWDOWN_PCT": "100",
        # A burst of 1s-bar signals from a replay at full speed waits its turn at the rate
        # limit longer than three bars: stale by the default; age is not what this measures.
        "MAX_SIGNAL_AGE_SECONDS": "0",
    }
    process = EngineProcess([COMMAND, "run"], env=env, cwd=tmp_path)
    client = redis.Redis.from_url(redis_url)
    stream = f"{redis_prefix}signal:gmo"
    try:
        replay = run_cli("replay", "--synthetic", "800", "--seed", "3", env=env, cwd=tmp_path)
        assert replay.returncode == 0, replay.stderr
        deadline = time.monotonic() + 90
        signals, before = 0, -1
        trades = f"{redis_prefix}md:trade"
        while time.monotonic() < deadline:
            signals = client.xlen(stream) if client.exists(stream) else 0
            # every trade read (a strategy behind on a loaded machine has more signals to
            # come), no new signal since the last look, and every signal handled
            read_all = strategy_lag(client, trades) == 0 and signals == before
            if read_all and signals and _consumed(client, stream, EXECUTION) == signals:
                break
            before = signals
            time.sleep(0.25)
        assert signals > 50  # a busy replay, not a quiet one
        assert _consumed(client, stream, EXECUTION) == signals
        time.sleep(1.5)  # a last poll records the final fills
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        client.close()
    assert process.returncode == 0, err.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["strategy"]["signals_published"] == signals
    execution = report["execution"]
    assert execution["signals"] == signals
    assert execution["refused"] == 0
    assert standin.placements() == execution["orders"]  # each order sent once
    assert {order.status for order in standin.exchange.orders.values()} == {"EXECUTED"}
    store = postgres_event_store(pg_url, schema=pg_schema)
    try:
        position = store.find_position("gmo", "BTC_JPY")
        exchange_net = sum(
            (o.size if o.side == "BUY" else -o.size for o in standin.exchange.orders.values()),
            Decimal(0),
        )
        assert position.quantity == exchange_net
        orders = orders_in_log(store, "gmo")
        assert len(orders) == execution["orders"]
        assert {order.status for order in orders} == {OrderStatus.FILLED}
        head = store.max_position()
    finally:
        store.close()
    # the read tables, kept by the same process: every order, every fill, the position
    assert report["projections"] == {"orders": head, "positions": head}
    tables = postgres_projection_store(pg_url, pg_schema)
    try:
        rows = tables.rows("orders")
        assert len(rows) == execution["orders"]
        assert {row["status"] for row in rows} == {"FILLED"}
        assert len(tables.rows("executions")) == sum(len(o.execution_ids) for o in orders)
        (position_row,) = tables.rows("positions")
        assert position_row["size"] == abs(exchange_net)
    finally:
        tables.close()
