"""Logging wired: JSON or text lines with secrets masked, the database log, and which errors are
transient."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import eventsourcing.persistence

from trading_engine.adapters.logs.json_lines import JsonLinesFormatter, RedactingTextFormatter
from trading_engine.adapters.logs.redaction import Redactor, url_passwords
from trading_engine.app.bootstrap import databases
from trading_engine.app.runtime.config import Settings
from trading_engine.ports.broker import RetryLater, TradingPaused

# The exchange clients, Redis, what only PostgreSQL uses, the health endpoint and the bar
# file reader (pandas) are imported by the functions that use them: a command loads what
# it uses, and `backtest`, `export` or `audit` no exchange client and no Redis (issue 16).
if TYPE_CHECKING:
    from trading_engine.adapters.logs.db_log import DatabaseLogHandler


def transient_errors() -> tuple[type[BaseException], ...]:
    """What `run` waits out with backoff instead of stopping: the servers it needs are away
    for a while (restarted, failed over, network). Anything else is a bug or needs an
    operator. (A function, so that only `run` imports redis and psycopg for it.)"""
    import psycopg
    import redis

    return (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        redis.exceptions.BusyLoadingError,
        psycopg.OperationalError,
        eventsourcing.persistence.OperationalError,
        eventsourcing.persistence.InterfaceError,
        ConnectionError,
        # the exchange in maintenance, rate limiting or unreachable while start-up reconciles
        # (once running, the loop handles these itself: it records refusals, polls again)
        TradingPaused,
        RetryLater,
    )


@dataclass
class LogSetup:
    redact: Redactor
    database: DatabaseLogHandler | None

    def close(self) -> None:
        if self.database is not None:
            logging.getLogger().removeHandler(self.database)
            self.database.close()


def secrets_of(settings: Settings) -> Redactor:
    return Redactor(
        [
            settings.API_KEY.get_secret_value(),
            settings.API_SECRET.get_secret_value(),
            *url_passwords(settings.DATABASE_URL, settings.REDIS_URL),
        ]
    )


def configure_logging(settings: Settings, *, to_database: bool = True) -> LogSetup:
    """stdout (JSON lines or text, at LOG_LEVEL) and, for SQL databases, the engine_log table
    (events and errors whatever the level); every line redacted of the secrets."""
    redact = secrets_of(settings)
    stdout = logging.StreamHandler(sys.stdout)
    stdout.setLevel(settings.LOG_LEVEL)
    json_lines = settings.LOG_FORMAT == "json"
    stdout.setFormatter(
        JsonLinesFormatter(redact) if json_lines else RedactingTextFormatter(redact)
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(stdout)
    root.setLevel(settings.LOG_LEVEL)
    for chatty in ("httpx", "httpcore"):  # one line per request: the metrics count those
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    database = None
    if to_database and settings.LOG_TO_DATABASE:
        database = databases.database(settings.DATABASE_URL).log_handler(redact)
    if database is not None:
        root.addHandler(database)
    return LogSetup(redact, database)
