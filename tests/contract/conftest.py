"""Redis for the stream contract suites: the real server, never a mock of it.

`TEST_REDIS_URL` names the server (default: redis://127.0.0.1:6379/0). If it does not answer,
the Redis tests fail with a message saying what they need; they are not skipped. Each test
works on keys under its own random prefix and deletes exactly those keys afterwards: the
database is never flushed, so a shared server is safe.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

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
