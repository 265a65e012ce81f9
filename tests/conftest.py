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
