"""The log adapters: JSON lines with secrets masked, and the engine_log writer (SQLite here;
PostgreSQL in tests/integration/test_structured_logs.py)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import orjson

from trading_engine.adapters.logs.db_log import DatabaseLogHandler, sqlite_log_handler
from trading_engine.adapters.logs.json_lines import JsonLinesFormatter
from trading_engine.adapters.logs.redaction import MASK, Redactor, url_passwords
from trading_engine.adapters.sql.connections import connect_sqlite
from trading_engine.adapters.sql.migrations import migrate_sqlite
from trading_engine.app.runtime.log_events import log_event

SECRET = "s3cr3t-value-0123456789"


def a_logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"test.{name}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.WARNING)  # events must pass anyway
    return logger


class Lines(logging.Handler):
    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_json_lines_carry_event_fields_and_mask_secrets_everywhere() -> None:
    handler = Lines(JsonLinesFormatter(Redactor([SECRET])))
    logger = a_logger("json", handler)
    log_event(
        logger,
        "order",
        "order %s placed with key %s",
        "o-1",
        SECRET,
        correlation_id="sig-1",
        note=f"header {SECRET}",
    )
    try:
        raise RuntimeError(f"driver said password={SECRET}")
    except RuntimeError:
        logger.exception("failed")
    event, error = (orjson.loads(line) for line in handler.lines)
    assert event["event"] == "order"
    assert event["correlation_id"] == "sig-1"
    assert event["level"] == "INFO"  # kept although the logger is at WARNING
    assert event["message"] == f"order o-1 placed with key {MASK}"
    assert event["fields"] == {"note": f"header {MASK}"}
    assert "RuntimeError" in error["exception"]
    assert SECRET not in "".join(handler.lines)


def test_url_passwords_are_found_as_written_and_decoded() -> None:
    assert url_passwords("postgresql://u:p%40ss@h/db", "redis://h:6379/0") == ["p%40ss", "p@ss"]
    assert url_passwords("not a url") == []


def test_database_log_keeps_events_and_errors_and_waits_for_the_database(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.sqlite3"
    conn = connect_sqlite(path)
    migrate_sqlite(conn)
    conn.close()
    attempts = {"n": 0}

    def flaky_connect() -> sqlite3.Connection:
        attempts["n"] += 1
        if attempts["n"] <= 2:  # the database is away for the first two tries
            raise sqlite3.OperationalError("unable to open database file")
        return connect_sqlite(path)

    handler = DatabaseLogHandler(flaky_connect, "?", Redactor([SECRET]), retry_seconds=0.01)
    logger = a_logger("db", handler)
    log_event(logger, "signal", "signal %s", "sig-9", correlation_id="sig-9", entry="1-0")
    logger.warning("an ordinary warning: not for the table")
    logger.error("exchange said %s", SECRET)
    handler.close()
    rows = connect_sqlite(path).execute(
        "SELECT event, level, correlation_id, message, fields FROM engine_log ORDER BY id"
    )
    rows = rows.fetchall()
    assert rows == [
        ("signal", "INFO", "sig-9", "signal sig-9", '{"entry":"1-0"}'),
        ("error", "ERROR", None, f"exchange said {MASK}", "{}"),
    ]
    assert attempts["n"] == 3
    assert handler.written == 2
    assert handler.dropped == 0


def test_the_sqlite_handler_factory_writes_to_the_named_file(tmp_path: Path) -> None:
    path = tmp_path / "engine.sqlite3"
    conn = connect_sqlite(path)
    migrate_sqlite(conn)
    conn.close()
    handler = sqlite_log_handler(str(path), Redactor([]))
    log_event(a_logger("factory", handler), "fill", "filled", correlation_id="c")
    handler.close()
    count = connect_sqlite(path).execute("SELECT COUNT(*) FROM engine_log").fetchone()[0]
    assert count == 1


def test_a_short_secret_is_masked_as_a_token_a_long_one_anywhere() -> None:
    redact = Redactor(["trading", SECRET])
    assert redact("postgresql://u:trading@h/db") == f"postgresql://u:{MASK}@h/db"
    assert redact("trading_engine.strategy started") == "trading_engine.strategy started"
    assert redact(f"x{SECRET}y") == f"x{MASK}y"
    assert Redactor([])("nothing to hide") == "nothing to hide"
