"""`trading-engine run` with the Execution module, and the kill switch, as an operator runs
them: a real process, Redis, PostgreSQL and the stand-in GMO server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from adapters.eventstore.postgres import postgres_event_store
from adapters.signals.redis_bus import RedisSignalPublisher
from domain.models import Signal
from domain.order import order_id_for
from domain.values import OrderStatus
from gmo_standin import GmoStandIn

pytestmark = pytest.mark.postgres
COMMAND = shutil.which("trading-engine") or str(Path(sys.executable).with_name("trading-engine"))


@pytest.fixture
def standin() -> Iterator[GmoStandIn]:
    server = GmoStandIn(api_key="cli-key", api_secret="cli-secret")
    server.start()
    yield server
    server.stop()


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
    process = subprocess.Popen(
        [COMMAND, "run"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
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
    halted = subprocess.run(
        [COMMAND, "risk", "halt", "--reason", "desk says stop"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert halted.returncode == 0, halted.stderr
    assert "HALTED (desk says stop)" in halted.stdout
    status = subprocess.run(
        [COMMAND, "risk", "status"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "HALTED" in status.stdout


def test_run_refuses_execution_without_credentials(tmp_path: Path, redis_url: str) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("API_KEY", "API_SECRET")},
        "DATABASE_URL": f"sqlite:///{tmp_path / 'e.sqlite3'}",
        "REDIS_URL": redis_url,
        "ENABLE_STRATEGY": "false",
        "ENABLE_EXECUTION": "true",
    }
    result = subprocess.run(
        [COMMAND, "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "API_KEY and API_SECRET" in result.stderr
    assert "Traceback" not in result.stderr
