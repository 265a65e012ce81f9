"""Reconciliation on start: the exchange's account against the event store.

Run before any signal is consumed, so a crash between "order sent" and "answer stored" is
settled before new orders can go out:

1. Every order in the log that is not finished is tracked and checked once: a placement
   whose answer was lost is looked up (and accepted if found), missing executions are
   recorded (source "reconciliation"), cancels at the exchange end the order.
2. The exchange's open orders and recent executions that the store does not know are
   reported (an order placed by hand, or by another engine on the same account): the engine
   does not adopt them, since no signal caused them, but an operator must see them.
3. Executions of known orders that the store lacks are recorded.
4. Margin positions at the exchange are compared with the store's positions.
5. The run and its differences are recorded in the log (`ReconciliationRun`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from uuid import UUID

from trading_engine.app.execution.order_monitor import OrderMonitor
from trading_engine.domain.order import Order
from trading_engine.domain.reconciliation import ReconciliationRun
from trading_engine.domain.values import ZERO, Side
from trading_engine.ports.broker import Broker
from trading_engine.ports.clock import Clock
from trading_engine.ports.event_store import EventStore

log = logging.getLogger(__name__)
LOG_PAGE = 1000
SETTLE_ROUNDS = 10  # lookups of a lost placement at start, at most (the monitor's limit ends it)


@dataclass
class ReconciliationReport:
    orders_in_store: int = 0
    live_orders_checked: int = 0
    placements_found: int = 0
    fills_recorded: int = 0
    unknown_open_orders: list[str] = field(default_factory=list)
    unknown_executions: list[str] = field(default_factory=list)
    position_differences: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.unknown_open_orders or self.unknown_executions or self.position_differences
        )


def orders_in_log(store: EventStore, exchange: str) -> list[Order]:
    """Every order of `exchange` in the log (read in pages; issue 5's projection will index
    this)."""
    ids = []
    start = 1
    while True:
        page = store.read_log(start, LOG_PAGE)
        ids += [r.aggregate_id for r in page if r.name == "Order.Submitted"]
        if len(page) < LOG_PAGE:
            break
        start = page[-1].position + 1
    orders = [store.get_order(order_id) for order_id in ids]
    return [o for o in orders if o.exchange.value == exchange]


def reconcile(
    store: EventStore,
    broker: Broker,
    monitor: OrderMonitor,
    *,
    exchange: str,
    symbols: list[str],
    clock: Clock,
) -> ReconciliationReport:
    report = ReconciliationReport()
    orders = orders_in_log(store, exchange)
    report.orders_in_store = len(orders)
    for order in orders:
        monitor.track(order)
    unplaced = {o.id for o in orders if o.exchange_order_id is None and not o.is_terminal}
    report.live_orders_checked = len(monitor.tracked)
    monitor.poll()
    # Settle every lost placement before any signal is decided. One not found yet stays
    # tracked as live exposure (`OrderMonitor.pending_exposure`) until `not_found_limit`
    # lookups have failed, and a signal decided meanwhile is sized against a position that
    # may not exist (a close the exchange refuses, an open that goes through: the position
    # drifts). The process that would have sent it is gone, so it cannot appear later.
    for _ in range(SETTLE_ROUNDS):
        if not any(_unsettled(store, order_id, monitor) for order_id in unplaced):
            break
        monitor.poll()
    report.placements_found = sum(
        1 for order_id in unplaced if store.get_order(order_id).exchange_order_id is not None
    )
    for symbol in symbols:
        for seen in broker.open_orders(symbol):
            if seen.exchange_order_id not in monitor.by_exchange_id:
                report.unknown_open_orders.append(
                    f"{seen.exchange_order_id} {seen.side} {seen.size} {symbol} @ "
                    f"{seen.price or 'MARKET'} ({seen.raw_status})"
                )
        known = []
        for execution in broker.recent_executions(symbol):
            if execution.exchange_order_id not in monitor.by_exchange_id:
                report.unknown_executions.append(
                    f"{execution.execution_id} of order {execution.exchange_order_id}: "
                    f"{execution.side} {execution.size} {symbol} @ {execution.price}"
                )
            else:
                known.append((execution, "reconciliation"))
        report.fills_recorded += monitor.record_in_exchange_order(known)
        difference = _position_difference(store, broker, exchange, symbol)
        if difference:
            report.position_differences.append(difference)
    _log(report)
    store.save(
        ReconciliationRun.record(
            exchange=exchange,
            at=clock.now(),
            orders_in_store=report.orders_in_store,
            live_orders_checked=report.live_orders_checked,
            placements_found=report.placements_found,
            fills_recorded=report.fills_recorded,
            unknown_open_orders=report.unknown_open_orders,
            unknown_executions=report.unknown_executions,
            position_differences=report.position_differences,
        )
    )
    return report


def _unsettled(store: EventStore, order_id: UUID, monitor: OrderMonitor) -> bool:
    """A lost placement still followed: neither found at the exchange nor declared unplaced."""
    return order_id in monitor.tracked and store.get_order(order_id).exchange_order_id is None


def _position_difference(
    store: EventStore, broker: Broker, exchange: str, symbol: str
) -> str | None:
    at_exchange = list(broker.positions(symbol))
    if not at_exchange and not symbol.endswith("_JPY"):
        return None  # spot: holdings are balances, shared with whatever else the account does
    net = sum((p.size if p.side is Side.BUY else -p.size for p in at_exchange), Decimal(0))
    position = store.find_position(exchange, symbol)
    ours = position.quantity if position is not None else ZERO
    if net != ours:
        return f"{symbol}: exchange net {net}, store {ours}"
    return None


def _log(report: ReconciliationReport) -> None:
    log.info(
        "reconciliation: %d orders in store, %d live checked, %d lost placements found, "
        "%d fills recorded",
        report.orders_in_store,
        report.live_orders_checked,
        report.placements_found,
        report.fills_recorded,
    )
    for line in report.unknown_open_orders:
        log.warning("reconciliation: open order unknown to the store: %s", line)
    for line in report.unknown_executions:
        log.warning("reconciliation: execution of an order unknown to the store: %s", line)
    for line in report.position_differences:
        log.error("reconciliation: position differs: %s", line)
