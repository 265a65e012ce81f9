"""`trading-engine run` logs as the seed asks: JSON lines on stdout, the signals, orders, fills,
rejections and errors in the `engine_log` table, one correlation id from the market entry to
the fills, and the API key, secret and database password nowhere in any of it.

A real process with both modules, real Redis and PostgreSQL, orders to the stand-in GMO server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg
import pytest
import redis
from psycopg import sql

from support.cli import COMMAND
from support.engine_output import EngineProcess
from support.engine_process import wait_until
from trading_engine.adapters.marketdata.stream_writer import publish_trades
from trading_engine.adapters.marketdata.synthetic import synthetic_trades
from trading_engine_standins.gmo import GmoStandIn

pytestmark = pytest.mark.postgres

API_KEY = f"key-{uuid.uuid4().hex}"
API_SECRET = f"secret-{uuid.uuid4().hex}"
DB_PASSWORD = f"pw{uuid.uuid4().hex[:16]}"  # trust auth accepts it; it must still not show
# A past day: bars close by the next trade (the feed's clock gets an hour of grace), so the
# run is the same however slow the machine is.
START = datetime(2025, 3, 3, tzinfo=UTC)


@pytest.fixture
def standin(gmo_standin: Callable[..., GmoStandIn]) -> GmoStandIn:
    return gmo_standin(API_KEY, API_SECRET)


def with_password(pg_url: str, password: str) -> str:
    scheme, rest = pg_url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user.split(':')[0]}:{password}@{host}"


def test_run_logs_json_and_database_rows_with_one_correlation_id_and_no_secrets(
    tmp_path: Path,
    pg_url: str,
    pg_schema: str,
    redis_url: str,
    redis_prefix: str,
    standin: GmoStandIn,
) -> None:
    trades = list(synthetic_trades(start=START, seed=11, count=6000))
    standin.set_last_price("BTC_JPY", trades[0].price)
    # One order of the run is refused by the exchange, so a rejection is logged too.
    standin.fail_next("/v1/order", "ERR-201")
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("API_KEY", "API_SECRET")},
        "DATABASE_URL": f"{with_password(pg_url, DB_PASSWORD)}?schema={pg_schema}",
        "REDIS_URL": redis_url,
        "STREAM_PREFIX": redis_prefix,
        "ENABLE_STRATEGY": "true",
        "ENABLE_EXECUTION": "true",
        "REST_BASE_URL": standin.base_url,
        "API_KEY": API_KEY,
        "API_SECRET": API_SECRET,
        "OHLCV_TIMEFRAMES": "1m",
        "BAR_CLOSE_GRACE_SECONDS": "3600",  # bars close on later trades only
        "STRATEGY_TIMEFRAME": "1m",
        "MA_FAST_WINDOW": "3",
        "MA_SLOW_WINDOW": "8",
        "ORDER_SIZE": "0.01",
        "ORDER_POLL_INTERVAL_SECONDS": "0.05",
        "LOG_LEVEL": "DEBUG",  # the most output there is to leak from
        "LOG_FORMAT": "json",
    }
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    client = redis.Redis.from_url(redis_url)
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen([COMMAND, "run"], env=env, cwd=tmp_path, stdout=out, stderr=err)
        try:
            stream = f"{redis_prefix}md:trade"
            for start in range(0, len(trades), 500):
                chunk = trades[start : start + 500]
                publish_trades(client, chunk, stream=stream)
                standin.set_last_price("BTC_JPY", chunk[-1].price)
            # (the last bar stays open, so its trades stay pending: read is enough)
            wait_until(lambda: _handled(client, stream, read=True), 90, "the market entries")
            wait_until(lambda: _handled(client, f"{redis_prefix}signal:gmo"), 60, "the signals")
            time.sleep(1.0)  # the monitor's next polls record the last fills
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            client.close()
    out_text, err_text = stdout.read_text(), stderr.read_text()
    assert process.returncode == 0, err_text[-3000:]

    # stdout: every line one JSON object, the report last
    lines = out_text.strip().splitlines()
    records = [orjson.loads(line) for line in lines[:-1]]
    report = orjson.loads(lines[-1])
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert report["execution"]["orders"] >= 2, report

    rows = _engine_log(pg_url, pg_schema)
    by_event: dict[str, list[dict]] = {}
    for row in rows:
        by_event.setdefault(row["event"], []).append(row)
    assert {"signal", "order", "fill", "rejection"} <= set(by_event), sorted(by_event)
    assert any(r["fields"].get("reject_code") == "ERR-201" for r in by_event["rejection"])

    # one correlation id: market entry -> signal -> order -> fills
    entry_ids = {
        (i.decode() if isinstance(i, bytes) else i)
        for i, _ in redis.Redis.from_url(redis_url).xrange(f"{redis_prefix}md:trade")
    }
    followed = 0
    for signal_row in by_event["signal"]:
        chain = [r for r in rows if r["correlation_id"] == signal_row["correlation_id"]]
        events = [r["event"] for r in chain]
        if "fill" not in events:
            continue
        assert signal_row["fields"]["market_entry"] in entry_ids
        assert events.index("signal") < events.index("order") < events.index("fill"), events
        order_ids = {r["fields"]["order_id"] for r in chain if r["event"] in ("order", "fill")}
        assert len(order_ids) == 1, chain
        followed += 1
    assert followed >= 1
    print(
        f"\nlogs: {len(records)} JSON lines on stdout, {len(rows)} engine_log rows "
        f"({', '.join(f'{k}={len(v)}' for k, v in sorted(by_event.items()))}), "
        f"{followed} signals followed entry -> signal -> order -> fill"
    )

    # no secret anywhere: stdout, stderr, the log table, the event store
    everything = (
        out_text + err_text + orjson.dumps(rows).decode() + _event_log_text(pg_url, pg_schema)
    )
    for secret in (API_KEY, API_SECRET, DB_PASSWORD):
        assert secret not in everything


def test_an_error_naming_a_secret_is_redacted(tmp_path: Path, redis_url: str) -> None:
    """A start-up failure whose message carries the database URL (and its password)."""
    env = {
        **os.environ,
        "DATABASE_URL": f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:1/none",
        "REDIS_URL": redis_url,
        "ENABLE_EXECUTION": "false",
        "RETRY_MAX_BACKOFF_SECONDS": "0.2",
    }
    process = EngineProcess([COMMAND, "run"], env=env, cwd=tmp_path)
    try:
        time.sleep(3)  # several retries of the start-up, each logging the driver's error
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    text = (out + err).decode()
    assert process.returncode == 0, text[-2000:]
    assert "retry" in text
    assert DB_PASSWORD not in text


def _handled(client: redis.Redis, stream: str, read: bool = False) -> bool:
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:
        return False
    return bool(groups) and all(g["lag"] == 0 and (read or g["pending"] == 0) for g in groups)


def _engine_log(pg_url: str, schema: str) -> list[dict]:
    with psycopg.connect(pg_url) as conn:
        cursor = conn.execute(
            sql.SQL(
                "SELECT event, level, correlation_id, message, fields"
                " FROM {}.engine_log ORDER BY id"
            ).format(sql.Identifier(schema))
        )
        names = [c.name for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _event_log_text(pg_url: str, schema: str) -> str:
    with psycopg.connect(pg_url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        ]
        text = []
        for table in tables:  # every column of every row, stored payloads (bytes) decoded
            query = sql.SQL("SELECT * FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            for row in conn.execute(query):
                text += [
                    v.decode("utf-8", "replace") if isinstance(v, bytes | memoryview) else str(v)
                    for v in (bytes(x) if isinstance(x, memoryview) else x for x in row)
                ]
    return "\n".join(text)
