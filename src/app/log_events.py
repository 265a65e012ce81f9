"""Business events in the log: one call names the event, its correlation id and its facts.

The correlation id of everything a signal causes is the signal's id: the strategy's `signal`
record names the market entry it came from, and the execution's `order`, `fill` and
`rejection` records carry the same id, so one query follows entry → signal → order → fills.
Where the records go (stdout as JSON, the `engine_log` table) is the composition root's choice.
"""

from __future__ import annotations

import logging
from typing import Any


def log_event(
    logger: logging.Logger,
    event: str,
    message: str,
    *args: object,
    correlation_id: str | None,
    level: int = logging.INFO,
    **fields: Any,
) -> None:
    # Handed to the handlers whatever LOG_LEVEL says about this logger: the database log is
    # the audit trail of decisions, not a debugging aid that a quieter level switches off
    # (the stdout handler still applies LOG_LEVEL).
    logger.handle(
        logger.makeRecord(
            logger.name,
            level,
            "(event)",
            0,
            message,
            args,
            None,
            extra={"event": event, "correlation_id": correlation_id, "fields": fields},
        )
    )
