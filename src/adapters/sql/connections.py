"""Opening the read-table databases named by `DATABASE_URL` (same place as the event store)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:  # psycopg is imported by what connects to PostgreSQL, not by SQLite's users
    import psycopg


def split_schema(database_url: str) -> tuple[str, str]:
    """`postgresql://...?schema=s` → (URL psycopg accepts, schema); schema defaults to public."""
    parts = urlsplit(database_url)
    query = dict(parse_qsl(parts.query))
    schema = query.pop("schema", "public")
    query.pop("pre_ping", None)
    return urlunsplit(parts._replace(query=urlencode(query))), schema


def connect_postgres(database_url: str, schema: str | None = None) -> psycopg.Connection:
    url, url_schema = split_schema(database_url)
    schema = schema or url_schema
    import psycopg
    from psycopg import sql

    conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    return conn


def connect_sqlite(path: str | Path) -> sqlite3.Connection:
    """Autocommit mode: every transaction is an explicit BEGIN ... COMMIT of ours."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=10, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn
