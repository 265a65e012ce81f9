"""Log records as one JSON object per line: what log shippers and `jq` read.

Fixed keys first (time, level, logger, message), then `event` and `correlation_id` when the
record carries them, then the record's own fields. Values JSON cannot hold become strings.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from trading_engine.adapters.logs.redaction import Redactor

# What every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured part of a record: its `fields` mapping and any other `extra=` keys."""
    fields = dict(getattr(record, "fields", None) or {})
    for key, value in vars(record).items():
        if key not in _STANDARD and key not in ("fields", "event", "correlation_id"):
            fields.setdefault(key, value)
    return fields


def record_time(record: logging.LogRecord) -> datetime:
    return datetime.fromtimestamp(record.created, UTC)


class JsonLinesFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": record_time(record).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            # redacted before encoding too: JSON escaping could hide a secret from the last pass
            "message": self._redact(record.getMessage()),
        }
        for key in ("event", "correlation_id"):
            if getattr(record, key, None) is not None:
                line[key] = getattr(record, key)
        fields = record_fields(record)
        if fields:
            line["fields"] = fields
        if record.exc_info:
            line["exception"] = self._redact(self.formatException(record.exc_info))
        if record.threadName and record.threadName != "MainThread":
            line["thread"] = record.threadName
        text = orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        return self._redact(text)


class RedactingTextFormatter(logging.Formatter):
    """The human format (`--log-format text`), with the same redaction."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))
