"""SIGTERM with an order open at the exchange: by default the order is left as it is (and
followed again at the next start); with CANCEL_OPEN_ORDERS_ON_STOP it is canceled first.
Either way the signal is acknowledged and the process exits 0.

A real process, Redis, PostgreSQL and the stand-in GMO server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
import redis

from support.cli import COMMAND
from support.engine_process import wait_until
from trading_engine.adapters.eventstore.postgres import postgres_event_store
from trading_engine.adapters.signals.redis_bus import RedisSignalPublisher
from trading_engine.domain.models import Signal
from trading_engine.domain.order import order_id_for
from trading_engine.domain.values import CancelType, OrderStatus
from trading_engine_standins.gmo import GmoStandIn

pytestmark = pytest.mark.postgres
MARKET = Decimal(5_000_000)


@pytest.fixture
def standin(gmo_standin: Callable[..., GmoStandIn]) -> GmoStandIn:
    return gmo_standin("stop-key", "stop-secret", last_price=MARKET)


def a_buy_below_the_market(signal_id: str) -> Signal:
    """A LIMIT buy at 10% under the last price: it rests at the exchange, unfilled."""
    return Signal(
        signal_id=signal_id,
        exchange="gmo",
        symbol="BTC_JPY",
        strategy="moving_average_cross",
        action="enter_long",
        confidence=Decimal(1),
        price_ref=MARKET * Decimal("0.9"),
        timestamp=datetime.now(UTC),
    )


def run_until_placed(
    env: dict[str, str], cwd: Path, standin: GmoStandIn, placed: int, then: str = ""
) -> dict:
    """Run until `placed` orders are at the exchange, the signals acknowledged and `then`
    appears in the log; then SIGTERM."""
    log = cwd / f"engine-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [COMMAND, "run"], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: "execution loop started" in log.read_text(), 60, "the start")
        wait_until(lambda: standin.placements() >= placed, 60, "the order to be placed")
        wait_until(lambda: then in log.read_text(), 30, repr(then))
        client = redis.Redis.from_url(env["REDIS_URL"])
        stream = f"{env['STREAM_PREFIX']}signal:gmo"
        try:
            wait_until(lambda: client.xinfo_groups(stream)[0]["pending"] == 0, 30, "the ack")
        finally:
            client.close()
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    text = log.read_text()
    assert process.returncode == 0, text[-3000:]
    return orjson.loads(text.strip().splitlines()[-1])


@pytest.mark.parametrize("cancel", [False, True], ids=["leave-open", "cancel-on-stop"])
def test_sigterm_leaves_or_cancels_open_orders_and_exits_0(
    tmp_path: Path,
    pg_url: str,
    pg_schema: str,
    redis_url: str,
    redis_prefix: str,
    standin: GmoStandIn,
    cancel: bool,
) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"{pg_url}?schema={pg_schema}",
        "REDIS_URL": redis_url,
        "STREAM_PREFIX": redis_prefix,
        "ENABLE_STRATEGY": "false",
        "ENABLE_EXECUTION": "true",
        "REST_BASE_URL": standin.base_url,
        "API_KEY": "stop-key",
        "API_SECRET": "stop-secret",
        "ORDER_TYPE": "LIMIT",
        "ORDER_POLL_INTERVAL_SECONDS": "0.1",
        "CANCEL_OPEN_ORDERS_ON_STOP": "true" if cancel else "false",
    }
    client = redis.Redis.from_url(redis_url)
    try:
        publisher = RedisSignalPublisher(client, stream_prefix=f"{redis_prefix}signal:")
        publisher.publish(a_buy_below_the_market("stop-sig-1"))
    finally:
        client.close()
    report = run_until_placed(env, tmp_path, standin, placed=1)
    assert report["execution"]["signals"] == 1

    (at_exchange,) = standin.exchange.orders.values()
    store = postgres_event_store(pg_url, schema=pg_schema)
    try:
        order = store.get_order(order_id_for("stop-sig-1", 0))
    finally:
        store.close()
    if cancel:
        assert at_exchange.status == "CANCELED"
        assert order.status is OrderStatus.CANCELED
        assert order.cancel_type is CancelType.USER
    else:
        assert at_exchange.status == "ORDERED"
        assert order.status is OrderStatus.NEW
        assert order.exchange_order_id == str(at_exchange.order_id)
        # the next start follows it again: a fill while the engine was away is recorded
        standin.market_trade("BTC_JPY", MARKET * Decimal("0.85"), Decimal(1))
        env["CANCEL_OPEN_ORDERS_ON_STOP"] = "false"
        run_until_placed(env, tmp_path, standin, placed=1, then='"event":"fill"')
        store = postgres_event_store(pg_url, schema=pg_schema)
        try:
            assert store.get_order(order.id).status is OrderStatus.FILLED
        finally:
            store.close()
    assert standin.placements() == 1  # never sent again


def catches_sigterm(pid: int) -> bool:
    """Whether the process has its SIGTERM handler installed (`SigCgt` in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


@pytest.mark.parametrize("when", ["handler installed", "0.2 s"])
def test_sigterm_while_the_process_starts_exits_0_before_consuming(
    tmp_path: Path, redis_url: str, redis_prefix: str, when: str
) -> None:
    """A container stopped as it starts: the request is kept from the first instant (before
    the imports), and `run` stops before it reads anything. The first case stops it the
    moment its handler is in place (found in /proc, not guessed by a sleep: start-up now
    takes a fraction of a second); the second a little later, when it may have started its
    loops, which then stop with nothing consumed."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'engine.sqlite3'}",
        "REDIS_URL": redis_url,
        "STREAM_PREFIX": redis_prefix,
        "ENABLE_EXECUTION": "false",
    }
    process = subprocess.Popen(
        [COMMAND, "run"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        if when == "handler installed":
            wait_until(lambda: catches_sigterm(process.pid), 30, "the SIGTERM handler")
        else:
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err.decode()[-2000:]
    last = orjson.loads(out.strip().splitlines()[-1])
    if when == "handler installed" or "started" in last:
        assert last == {"started": False}
    else:
        assert last["strategy"]["entries"] == last["strategy"]["acknowledged"] == 0
