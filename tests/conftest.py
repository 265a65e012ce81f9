"""Shared fixtures: a private PostgreSQL schema per test, so runs never see each other's rows.

`TEST_DATABASE_URL` names the server (default: the local trust-auth server, database `test`).
If it does not answer, PostgreSQL tests fail with a message saying what they need; they are
not skipped, because `ops/test.sh` starts the server before running them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis
from psycopg import sql

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_url() -> str:
    try:
        with psycopg.connect(TEST_DATABASE_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as error:
        pytest.fail(
            f"these tests need PostgreSQL at {TEST_DATABASE_URL} (set TEST_DATABASE_URL, or run "
            f"ops/services.sh to start the local one): {error}"
        )
    return TEST_DATABASE_URL


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    """A fresh schema for one test, dropped afterwards (with the append-only table in it)."""
    schema = f"te_test_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# Redis: the real server, never a mock. Each test works on keys under its own random prefix
# and deletes exactly those keys afterwards; the database is never flushed.
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=5)
        try:
            client.ping()
            version = str(client.info("server").get("redis_version", "0"))
        finally:
            client.close()
    except redis.RedisError as error:
        pytest.fail(
            f"these tests need Redis at {TEST_REDIS_URL} (set TEST_REDIS_URL, or run "
            f"ops/services.sh to start the local one): {error}"
        )
    if int(version.split(".")[0]) < 7:
        pytest.fail(f"these tests need Redis 7 or later at {TEST_REDIS_URL}, found {version}")
    return TEST_REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix for one test (`t1a2b3c4d:`); its keys are deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
