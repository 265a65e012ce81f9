"""Shared fixtures: a private PostgreSQL schema per test, so runs never see each other's rows.

`TEST_DATABASE_URL` names the server (default: the local trust-auth server, database `test`).
If it does not answer, PostgreSQL tests fail with a message saying what they need; they are
not skipped, because `ops/test.sh` starts the server before running them.

Every test isolates itself (its own schema, Redis key prefix and tmp_path), so the suite runs
on several pytest-xdist workers at once (`ops/test.sh` passes `-n`).

Hypothesis profiles, chosen by `HYPOTHESIS_PROFILE` (`ops/test.sh` chooses `ci`):

- `dev` (the default): 50 examples where a test does not say, for quick runs while working;
- `ci`: 300 examples where a test does not say, health checks for slow data generation off
  (the machine is shared with the rest of the suite), and a failure prints the blob that
  reproduces it (`@reproduce_failure`).

Neither has a deadline: examples run next to engines and other workers, and a slow example
is not a wrong one. A test that deliberately sets `max_examples` (or a step count) in its own
`@settings` keeps it in every profile: a profile gives defaults, never overrides.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
import redis
from hypothesis import HealthCheck, settings
from psycopg import sql

if TYPE_CHECKING:  # imported by the fixtures that use them: this file imports no engine module
    from support.projection_rig import Rig
    from trading_engine_standins.gmo import GmoStandIn

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# The longest modules start first, longest first (seconds on the CI machine, for this order
# only): a worker that picks up a one-minute test late makes the whole run wait for it. With
# `--dist loadgroup --no-loadscope-reorder` (ops/test.sh) each worker takes the next test (or
# the next xdist_group, tests sharing a module-scoped fixture) as it frees, so these spread
# over the workers at once; the rest keep pytest's order. A module missing here (renamed,
# new) just runs in its place.
SLOW_FIRST = {
    "test_live_feed_clock.py": 85,
    "test_engine_exchange_faults.py": 56,
    "test_engine_sigkill_full.py": 53,
    "test_same_bars_any_path.py": 48,
    "test_live_backtest_parity.py": 36,
    "test_servers_away.py": 29,
    "test_strategy_loop_recovery.py": 21,  # one xdist group
    "test_long_gap.py": 21,
    "test_wheel_install.py": 20,  # one xdist group
    "test_cli_execution.py": 15,
    "test_strategy_service_crash.py": 14,
    "test_malformed_flood.py": 11,
    "test_report_browser.py": 8,
    "test_projections_postgres_faults.py": 8,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: -SLOW_FIRST.get(item.path.name, 0))  # stable: modules stay whole


# The terminal's size as the pytest command saw it. An xdist worker starts with COLUMNS=80 and
# LINES=24 of its own in its environment; the CLI's consoles read COLUMNS once, when imported,
# so a worker's in-process `trading-engine` (tests/support/cli.py) would wrap at 80 columns
# where the script, given COLUMNS by the test, does not. Workers get the controller's values.
TERMINAL = ("COLUMNS", "LINES")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist, in the controller: what the workers' environment should say of the terminal."""
    node.workerinput["terminal"] = {name: os.environ.get(name) for name in TERMINAL}


def pytest_configure(config: pytest.Config) -> None:
    # (registered by pytest-xdist too; here for a run without it: -p no:xdist)
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one xdist worker")
    terminal = getattr(config, "workerinput", {}).get("terminal")
    for name, value in (terminal or {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


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


# The GMO stand-in: a real HTTP server in this process, on a port of its own.
StartStandIn = Callable[..., "GmoStandIn"]


@pytest.fixture
def gmo_standin() -> Iterator[StartStandIn]:
    """Starts GMO stand-ins, each stopped after the test: `gmo_standin(key, secret)` with
    GMO's rate limit (20 requests/s, as the engine meets it), `rate_limited=False` without,
    `last_price=` the BTC_JPY price its market orders fill at."""
    from trading_engine_standins.gmo import GmoStandIn

    started: list[GmoStandIn] = []

    def start(
        api_key: str = "k",
        api_secret: str = "s",
        *,
        rate_limited: bool = True,
        last_price: Decimal | None = None,
    ) -> GmoStandIn:
        server = GmoStandIn(api_key=api_key, api_secret=api_secret)
        if not rate_limited:
            server.rate_limit_per_second = None
        server.start()
        started.append(server)
        if last_price is not None:
            server.set_last_price("BTC_JPY", last_price)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def projection_rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    """The projections wired on a SQLite file, then on a PostgreSQL schema of the test's own."""
    from support.projection_rig import postgres_rig, sqlite_rig

    if request.param == "sqlite":
        made = sqlite_rig(tmp_path)
    else:
        made = postgres_rig(request.getfixturevalue("pg_url"), request.getfixturevalue("pg_schema"))
    yield made
    made.close()
