"""Business events in the log: one call names the event, its correlation id and its facts.

The correlation id of everything a signal causes is the signal's id: the strategy's `signal`
record names the market entry it came from, and the execution's `order`, `fill` and
`rejection` records carry the same id, so one query follows entry → signal → order → fills.
Where the records go (stdout as JSON, the `engine_log` table) is the composition root's choice.
"""

from __future__ import annotations

import logging
from typing import Any

from trading_engine.domain.order import Order
from trading_engine.domain.values import OrderStatus


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
    # (the stdout handler still applies LOG_LEVEL). Not made at all when no handler would
    # take it (a backtest: its event log is the trail; a record per order was a tenth).
    if not _heard(logger, level):
        return
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


def _heard(logger: logging.Logger, level: int) -> bool:
    """Whether `Logger.callHandlers` would hand a record at `level` to some handler (or,
    with none on the way to the root, to `logging.lastResort`)."""
    found = False
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            found = True
            if level >= handler.level:
                return True
        current = current.parent if current.propagate else None
    return not found and logging.lastResort is not None and level >= logging.lastResort.level


def order_event(
    logger: logging.Logger,
    order: Order,
    event: str,
    what: str,
    level: int | None = None,
    **facts: Any,
) -> None:
    """A step of an order, under its signal's id; a rejection is a WARNING unless told."""
    if level is None:
        level = logging.WARNING if order.status is OrderStatus.REJECTED else logging.INFO
    log_event(
        logger,
        event,
        "order %s %s: %s",
        order.id,
        order.status.value,
        what,
        correlation_id=order.signal_id,
        level=level,
        order_id=str(order.id),
        exchange_order_id=order.exchange_order_id,
        status=order.status.value,
        symbol=str(order.symbol),
        side=str(order.side),
        order_type=str(order.order_type),
        size=str(order.size),
        price=None if order.price is None else str(order.price),
        reject_code=order.reject_code,
        **facts,
    )
