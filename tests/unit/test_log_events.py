"""A business event is handed to the handlers whatever the logger's level, and not made at all
when no handler on the way would take it."""

from __future__ import annotations

import logging

from trading_engine.app.runtime.log_events import _heard, log_event


class Keep(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def isolated(name: str) -> logging.Logger:
    logger = logging.getLogger(f"test_log_events.{name}")
    logger.propagate = False
    logger.handlers.clear()
    logger.setLevel(logging.ERROR)  # a quiet LOG_LEVEL: business events still go through
    return logger


def test_an_event_reaches_a_handler_that_takes_its_level() -> None:
    logger = isolated("taken")
    keep = Keep(logging.INFO)
    logger.addHandler(keep)
    log_event(logger, "fill", "filled %s", "0.01", correlation_id="s-1", size="0.01")
    (record,) = keep.records
    assert (record.event, record.correlation_id, record.fields) == ("fill", "s-1", {"size": "0.01"})


def test_no_record_is_made_when_no_handler_would_take_it() -> None:
    logger = isolated("unheard")
    keep = Keep(logging.ERROR)
    logger.addHandler(keep)
    assert not _heard(logger, logging.INFO)
    log_event(logger, "fill", "filled", correlation_id="s-1")
    assert keep.records == []
    assert _heard(logger, logging.ERROR)


def test_with_no_handler_at_all_the_last_resort_decides() -> None:
    logger = isolated("bare")
    assert not _heard(logger, logging.INFO)
    assert _heard(logger, logging.WARNING)  # printed by logging.lastResort, as before
