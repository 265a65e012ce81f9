"""`/livez`, `/readyz` and `/metrics` of a running `trading-engine run` (Redis, PostgreSQL),
and readiness turning false when a check fails."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import orjson
import pytest

from support.cli import COMMAND
from support.engine_output import EngineProcess
from support.private_servers import free_port
from trading_engine.adapters.http.health_server import HealthServer
from trading_engine.app.runtime.health import Readiness
from trading_engine.ports.health import Sample


@pytest.mark.postgres
def test_a_running_service_answers_probes_and_scrapes(
    tmp_path: Path, pg_url: str, pg_schema: str, redis_url: str, redis_prefix: str
) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "DATABASE_URL": f"{pg_url}?schema={pg_schema}",
        "REDIS_URL": redis_url,
        "STREAM_PREFIX": redis_prefix,
        "ENABLE_STRATEGY": "true",
        "ENABLE_EXECUTION": "false",
        "HEALTH_PORT": str(port),
    }
    process = EngineProcess([COMMAND, "run"], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        live = None
        while time.monotonic() < deadline:
            try:
                live = httpx.get(f"http://127.0.0.1:{port}/livez", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert live is not None
        assert live.status_code == 200
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        assert {"redis", "postgresql", "projections"} <= set(checks)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "trading_engine_strategy_entries_total" in metrics
        assert 'trading_engine_projection_lag_events{projection="orders"}' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0


def test_readiness_is_false_and_says_why_when_a_check_fails() -> None:
    calls = {"n": 0}

    def flaky() -> str | None:
        calls["n"] += 1
        return None if calls["n"] == 1 else "PostgreSQL did not answer in 2 s"

    def broken() -> str | None:
        raise ConnectionError("refused")

    server = HealthServer(
        Readiness({"postgresql": flaky}),
        [lambda: [Sample("trading_engine_x_total", "counter", "x", 3)]],
    ).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{base}/readyz").status_code == 200
        second = httpx.get(f"{base}/readyz")
        assert second.status_code == 503
        assert orjson.loads(second.content)["checks"]["postgresql"]["detail"].startswith(
            "PostgreSQL did not answer"
        )
        assert "trading_engine_x_total 3.0" in httpx.get(f"{base}/metrics").text
        assert httpx.get(f"{base}/nope").status_code == 404
    finally:
        server.stop()
    failing = Readiness({"exchange": broken}).report()
    assert failing == (
        False,
        {
            "ready": False,
            "checks": {"exchange": {"ok": False, "detail": "ConnectionError: refused"}},
        },
    )
