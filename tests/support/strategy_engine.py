"""The Strategy module as a real `trading-engine run` process, for the feed-clock tests: its
environment (a schema and stream prefix of its own), how far its group has read a stream, and
a stop that returns its report."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import redis
from psycopg import sql

from support.engine_output import EngineProcess
from trading_engine.app.bootstrap.strategy import STRATEGY_GROUP


def strategy_env(
    pg_url: str, schema: str, redis_url: str, prefix: str, **settings: str
) -> dict[str, str]:
    """`run` with the Strategy module only, on `schema` and streams under `prefix`."""
    return {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "DATABASE_URL": f"{pg_url}?schema={schema}",
        "REDIS_URL": redis_url,
        "STREAM_PREFIX": prefix,
        "ENABLE_STRATEGY": "true",
        "ENABLE_EXECUTION": "false",
        "LOG_LEVEL": "WARNING",
        **settings,
    }


@contextmanager
def private_schemas(pg_url: str, count: int) -> Iterator[list[str]]:
    """`count` schema names of one test's own, dropped afterwards."""
    names = [f"te_test_{uuid.uuid4().hex[:12]}" for _ in range(count)]
    try:
        yield names
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            for name in names:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )


def strategy_lag(client: redis.Redis, stream: str) -> int | None:
    """Entries of `stream` the strategy's group has not read yet (None: no group yet)."""
    try:
        groups = client.xinfo_groups(stream)
    except redis.ResponseError:
        return None
    for group in groups:
        if group["name"].decode() == STRATEGY_GROUP:
            return None if group.get("lag") is None else int(group["lag"])
    return None


def stop_for_report(engine: EngineProcess) -> tuple[dict, bytes]:
    """SIGTERM; the process must exit 0. Its strategy report and its whole stdout."""
    engine.send_signal(signal.SIGTERM)
    out, err = engine.communicate(timeout=60)
    assert engine.returncode == 0, err.decode()[-3000:]
    return json.loads(out.decode().strip().splitlines()[-1])["strategy"], out
