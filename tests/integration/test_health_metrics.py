"""The metrics and checks issue 8 asks of `run`'s health endpoint, each shown with a real value:
consumer-group pending counts and lag (real Redis streams with unacknowledged entries), orders
by state (the orders read table after real orders), rejections by reason, and exchange latency
and errors by code (the GMO stand-in answering an error)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from support.cli import COMMAND
from support.engine_output import EngineProcess
from support.private_servers import free_port
from trading_engine.adapters.http.health_server import HealthServer
from trading_engine.adapters.signals.redis_bus import EXECUTION_GROUP, RedisSignalPublisher
from trading_engine.app.bootstrap.execution import live_execution_loop
from trading_engine.app.bootstrap.health import CONSUMER_PENDING_READY, health_server
from trading_engine.app.runtime.config import load_settings
from trading_engine.app.runtime.health import Readiness
from trading_engine.domain.models import Signal
from trading_engine.ports.health import Sample
from trading_engine_standins.gmo import GmoStandIn

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base: str) -> Series:
    """Every series of /metrics by name and labels (parsed, not string-matched)."""
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float | None:
    return series.get((name, frozenset(labels.items())))


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.fixture
def standin(gmo_standin: Callable[..., GmoStandIn]) -> GmoStandIn:
    return gmo_standin("metrics-key", "metrics-secret")


def a_signal(signal_id: str, action: str) -> Signal:
    return Signal(
        signal_id=signal_id,
        exchange="gmo",
        symbol="BTC_JPY",
        strategy="moving_average_cross",
        action=action,
        confidence=Decimal(1),
        price_ref=Decimal(5_000_000),
        timestamp=datetime.now(UTC),
        indicators={},
        meta={},
    )


def test_histograms_render_for_prometheus_and_a_failing_source_spares_the_rest() -> None:
    def broken() -> list[Sample]:
        raise ConnectionError("database away")

    def exchange() -> list[Sample]:
        return [
            Sample(
                "trading_engine_exchange_request_seconds",
                "histogram",
                "h",
                0.75,
                (("method", "place_order"),),
                ((0.1, 1), (1.0, 3), (float("inf"), 4)),
            ),
            Sample("trading_engine_rejections_total", "counter", "r", 2, (("reason", "halted"),)),
        ]

    server = HealthServer(Readiness({}), [broken, exchange]).start()
    try:
        series = scrape(f"http://127.0.0.1:{server.port}")
    finally:
        server.stop()
    name, method = "trading_engine_exchange_request_seconds", "place_order"
    assert value(series, name + "_bucket", method=method, le="0.1") == 1
    assert value(series, name + "_bucket", method=method, le="1.0") == 3
    assert value(series, name + "_bucket", method=method, le="+Inf") == 4
    assert value(series, name + "_count", method=method) == 4
    assert value(series, name + "_sum", method=method) == 0.75
    assert value(series, "trading_engine_rejections_total", reason="halted") == 2


def test_pending_entries_of_a_consumer_group_fail_readiness_and_show_as_gauges(
    redis_url: str, redis_prefix: str, standin: GmoStandIn
) -> None:
    settings = load_settings(
        DATABASE_URL="memory://",
        REDIS_URL=redis_url,
        STREAM_PREFIX=redis_prefix,
        EXCHANGE_NAME="gmo",
        REST_BASE_URL=standin.base_url,
        API_KEY="metrics-key",
        API_SECRET="metrics-secret",
        HEALTH_PORT=0,
    )
    execution, close = live_execution_loop(settings)
    server = health_server(settings, None, execution, None)
    assert server is not None
    client = redis.Redis.from_url(redis_url)
    stream = f"{redis_prefix}signal:gmo"
    base = f"http://127.0.0.1:{server.port}"
    try:
        # nothing published yet: no stream, no group, nothing wrong
        ready = httpx.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["consumer_groups"] == {"ok": True, "detail": "ok"}
        assert ready.json()["checks"]["exchange"] == {"ok": True, "detail": "ok"}  # GMO, metered
        assert not [key for key in scrape(base) if key[0].startswith("trading_engine_stream_")]

        # a consumer of the group took more entries than the limit and died with them
        client.xgroup_create(stream, EXECUTION_GROUP, id="0", mkstream=True)
        held = CONSUMER_PENDING_READY + 1
        with client.pipeline(transaction=False) as pipe:
            for n in range(held):
                pipe.xadd(stream, {"n": n})
            pipe.execute()
        taken = client.xreadgroup(EXECUTION_GROUP, "dead-consumer", {stream: ">"}, count=held)
        assert len(taken[0][1]) == held
        with client.pipeline(transaction=False) as pipe:
            for n in range(5):  # and nobody read these
                pipe.xadd(stream, {"n": n})
            pipe.execute()

        ready = httpx.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 503
        detail = ready.json()["checks"]["consumer_groups"]["detail"]
        assert detail == f"{EXECUTION_GROUP} has {held} entries pending on {stream}"
        series = scrape(base)
        group = {"stream": stream, "group": EXECUTION_GROUP}
        assert value(series, "trading_engine_stream_pending", **group) == held
        assert value(series, "trading_engine_stream_lag", **group) == 5
    finally:
        server.stop()
        close()
        client.close()


@pytest.mark.postgres
def test_run_exposes_orders_rejections_exchange_latency_errors_and_pending(
    tmp_path: Path,
    pg_url: str,
    pg_schema: str,
    redis_url: str,
    redis_prefix: str,
    standin: GmoStandIn,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    stream = f"{redis_prefix}signal:gmo"
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "DATABASE_URL": f"{pg_url}?schema={pg_schema}",
        "REDIS_URL": redis_url,
        "STREAM_PREFIX": redis_prefix,
        "ENABLE_STRATEGY": "false",
        "ENABLE_EXECUTION": "true",
        "ENABLE_PROJECTIONS": "true",
        "REST_BASE_URL": standin.base_url,
        "API_KEY": "metrics-key",
        "API_SECRET": "metrics-secret",
        "ORDER_SIZE": "0.02",
        "ORDER_POLL_INTERVAL_SECONDS": "0.05",
        "HEALTH_PORT": str(port),
    }
    client = redis.Redis.from_url(redis_url)
    publisher = RedisSignalPublisher(client, stream_prefix=f"{redis_prefix}signal:")
    # An earlier consumer of the group died holding one signal: it stays pending (it is
    # reclaimed only after minutes of idleness).
    client.xgroup_create(stream, EXECUTION_GROUP, id="0", mkstream=True)
    publisher.publish(a_signal("held-1", "enter_long"))
    client.xreadgroup(EXECUTION_GROUP, "crashed-engine", {stream: ">"}, count=1)
    standin.fail_next("/v1/order", "ERR-201")  # the first placement: insufficient funds
    process = EngineProcess([COMMAND, "run"], env=env, cwd=tmp_path)
    try:
        assert wait_for(lambda: _answers(base)), "the health endpoint never answered"
        publisher.publish(a_signal("sig-1", "enter_long"))  # rejected: ERR-201
        publisher.publish(a_signal("sig-2", "enter_long"))  # placed and filled
        publisher.publish(a_signal("sig-3", "enter_short"))  # refused: shorting is disabled
        client.xadd(stream, {"signal_id": "junk-1"})  # malformed: set aside, counted by reason
        group = {"stream": stream, "group": EXECUTION_GROUP}
        expected = {
            ("trading_engine_orders", (("state", "FILLED"),)): 1,
            ("trading_engine_orders", (("state", "REJECTED"),)): 1,
            ("trading_engine_orders", (("state", "NEW"),)): 0,
            ("trading_engine_orders", (("state", "PARTIALLY_FILLED"),)): 0,
            ("trading_engine_orders", (("state", "CANCELED"),)): 0,
            ("trading_engine_rejections_total", (("reason", "ERR-201"),)): 1,
            ("trading_engine_rejections_total", (("reason", "shorting_disabled"),)): 1,
            (
                "trading_engine_exchange_errors_total",
                (("method", "place_order"), ("code", "ERR-201")),
            ): 1,
            ("trading_engine_exchange_request_seconds_count", (("method", "place_order"),)): 2,
            ("trading_engine_stream_pending", tuple(group.items())): 1,
            ("trading_engine_stream_lag", tuple(group.items())): 0,
            (
                "trading_engine_dead_letters_total",
                (("source", "signals"), ("reason", "missing-payload")),
            ): 1,
        }

        def seen() -> dict:
            series = scrape(base)
            return {key: value(series, key[0], **dict(key[1])) for key in expected}

        wait_for(lambda: seen() == expected)
        assert seen() == expected
        series = scrape(base)
        assert value(series, "trading_engine_execution_signals_total") == 3
        fetches = value(
            series, "trading_engine_exchange_request_seconds_count", method="fetch_orders"
        )
        assert (fetches or 0) > 0  # the order monitor's polls, timed too
        ready = httpx.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert {"redis", "postgresql", "exchange", "projections", "consumer_groups"} <= set(
            ready.json()["checks"]
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
            client.close()
    assert process.returncode == 0


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/livez", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
