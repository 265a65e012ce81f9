"""A reconciliation run, kept in the event log: what was compared and what differed.

The fills and placements it recovered are recorded on their orders (fills with source
"reconciliation"); this record keeps the rest, the differences an operator must look at
(orders and executions at the exchange that no signal caused, positions that disagree), so
an audit sees them next to the orders, not only in a log file that may be gone.
"""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4

from eventsourcing.domain import Aggregate

from trading_engine.domain.values import aware


class ReconciliationRun(Aggregate):
    class Completed(Aggregate.Created):
        exchange: str
        orders_in_store: int
        live_orders_checked: int
        placements_found: int
        fills_recorded: int
        unknown_open_orders: list[str]
        unknown_executions: list[str]
        position_differences: list[str]

    def __init__(
        self,
        exchange: str,
        orders_in_store: int,
        live_orders_checked: int,
        placements_found: int,
        fills_recorded: int,
        unknown_open_orders: list[str],
        unknown_executions: list[str],
        position_differences: list[str],
    ) -> None:
        self.exchange = exchange
        self.orders_in_store, self.live_orders_checked = orders_in_store, live_orders_checked
        self.placements_found, self.fills_recorded = placements_found, fills_recorded
        self.unknown_open_orders = unknown_open_orders
        self.unknown_executions = unknown_executions
        self.position_differences = position_differences

    @classmethod
    def record(cls, *, exchange: str, at: datetime, **report: object) -> ReconciliationRun:
        return cls._create(
            cls.Completed, id=uuid4(), timestamp=aware("at", at), exchange=exchange, **report
        )
