"""Versioned, re-runnable SQL migrations: `schema/{postgres,sqlite}/NNNN_*.sql`, package data
beside this module (or the folder named by TRADING_ENGINE_MIGRATIONS).

Each file runs once, in its own transaction, recorded in `schema_migrations`. PostgreSQL takes
an advisory lock so two services starting together do not race.
"""

from __future__ import annotations

import os
import sqlite3
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported by PostgreSQL's users only
    import psycopg


def migrations_dir() -> Path:
    named = os.environ.get("TRADING_ENGINE_MIGRATIONS")
    if named:
        return Path(named)
    # Installed as files (a wheel or an editable tree), never zipped: a real folder.
    return Path(str(resources.files(__package__) / "schema"))


def _files(dialect: str) -> list[Path]:
    folder = migrations_dir() / dialect
    files = sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    if not files:
        raise FileNotFoundError(f"no migrations in {folder} (set TRADING_ENGINE_MIGRATIONS)")
    return files


def migrate_postgres(conn: psycopg.Connection) -> list[str]:
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('trading-engine-migrations'))")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version VARCHAR(100) PRIMARY KEY,"
            " applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for path in _files("postgres"):
            if path.stem in done:
                continue
            conn.execute(path.read_text())  # type: ignore[arg-type]
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.stem,))
            applied.append(path.stem)
    return applied


def migrate_sqlite(conn: sqlite3.Connection) -> list[str]:
    applied: list[str] = []
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version VARCHAR(100) PRIMARY KEY,"
        " applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )
    conn.commit()
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    for path in _files("sqlite"):
        if path.stem in done:
            continue
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _statements(path.read_text()):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (version) VALUES (?)", (path.stem,))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        applied.append(path.stem)
    return applied


def _statements(script: str) -> list[str]:
    """Split a plain SQL script on semicolons (our SQLite scripts have no procedural code)."""
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]
