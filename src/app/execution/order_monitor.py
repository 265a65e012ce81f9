"""Follows every live order to its end by asking the exchange, and records what it says.

One `poll()` looks at each tracked order once: new executions are recorded (each execution id
once: the order refuses a redelivered one), a cancel or expiry at the exchange ends the order,
and a closed round trip is reported to risk. Polling is one way to learn these facts; a
private WebSocket feed would call `record_execution` / `record_exchange_order` the same way.

An order the exchange says it does not know is declared lost only after `not_found_limit`
answers in a row (GMO can lag right after placement). A lost order is CANCELED/LOST, and its
exchange id stays known, so an execution reported later is still recorded.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from trading_engine.app.execution.orders import OrderService
from trading_engine.app.execution.service import request_for
from trading_engine.domain.models import Execution
from trading_engine.domain.order import Order
from trading_engine.domain.values import ZERO, CancelType, OrderStatus
from trading_engine.ports.broker import (
    Broker,
    BrokerError,
    ExchangeExecution,
    ExchangeOrder,
    PrivateEvents,
)
from trading_engine.ports.clock import Clock
from trading_engine.ports.event_store import EventStore

log = logging.getLogger(__name__)

ResultSink = Callable[[str, Decimal], None]
RECORDED_IDS_KEPT = 10_000  # well above a few rounds of latest executions (100 per symbol)


class OrderMonitor:
    def __init__(
        self,
        store: EventStore,
        broker: Broker,
        clock: Clock,
        *,
        on_result: ResultSink | None = None,
        not_found_limit: int = 3,
    ) -> None:
        self._store, self._broker, self._clock = store, broker, clock
        self._orders = OrderService(store, clock)
        self._on_result = on_result or (lambda symbol, pnl: None)
        self._not_found_limit = not_found_limit
        self._misses: dict[UUID, int] = {}  # tracked order id -> not-found answers in a row
        # tracked order -> (symbol, signed unfilled size) as last loaded: numbers, not the
        # order, since a sole writer's store hands out the very object it later changes
        self._latest: dict[UUID, tuple[str, Decimal]] = {}
        self._exposure: dict[str, Decimal] = {}  # symbol -> sum of _latest's unfilled sizes
        self.by_exchange_id: dict[str, UUID] = {}
        # Execution ids known to be in the store: the latest-executions list repeats the same
        # fills every round, and each would otherwise cost a load of its order.
        self._recorded: OrderedDict[str, None] = OrderedDict()

    def _remember(self, execution_id: str) -> None:
        self._recorded[execution_id] = None
        if len(self._recorded) > RECORDED_IDS_KEPT:
            self._recorded.popitem(last=False)

    @property
    def tracked(self) -> set[UUID]:
        return set(self._misses)

    def track(self, order: Order) -> None:
        if order.exchange_order_id is not None:
            self.by_exchange_id[order.exchange_order_id] = order.id
        if not order.is_terminal:
            self._misses.setdefault(order.id, 0)
            self._note(order.id, order)

    def pending_exposure(self, symbol: str) -> Decimal:
        """Signed size still to fill on the live orders of `symbol` (buys +, sells −): the
        position a new decision must assume, since those fills may already have happened at
        the exchange before the next poll records them. Kept as a running sum: every signal
        asks, and a burst of signals can leave hundreds of orders live between polls."""
        return self._exposure.get(symbol, Decimal(0))

    def _note(self, order_id: UUID, order: Order | None) -> None:
        """Remember `order` as the latest view of a tracked order (None: no longer tracked)."""
        before = self._latest.pop(order_id, None)
        if before is not None:
            symbol, unfilled = before
            self._exposure[symbol] -= unfilled
        if order is not None:
            symbol = str(order.symbol)
            unfilled = order.side.sign * order.remaining_size if order.status.is_live else ZERO
            self._latest[order_id] = (symbol, unfilled)
            self._exposure[symbol] = self._exposure.get(symbol, ZERO) + unfilled

    # ----- polling --------------------------------------------------------------------------

    def poll(self, sweep: Collection[str] = ()) -> int:
        """Ask about every tracked order once; with `sweep`, also record the account's latest
        executions on those symbols for known orders no longer followed (lost, or filled late
        after a cancel). Returns how many orders are still live.

        What a round costs at the exchange, since every request counts against its rate
        limit: one status request per 10 orders, one latest-executions request per symbol,
        and a per-order executions request only for fills that list does not show."""
        placed: list[Order] = []
        for order_id in list(self._misses):
            order = self._store.get_order(order_id)
            if order.status is OrderStatus.REJECTED:
                self._misses.pop(order_id, None)
            elif order.exchange_order_id is None:
                self._guarded(order, self._look_for_placement)
            else:
                placed.append(order)
        try:
            seen = {
                s.exchange_order_id: s
                for s in self._broker.fetch_orders([str(o.exchange_order_id) for o in placed])
            }
        except BrokerError as error:
            log.warning("monitor: %d orders not checked this round: %s", len(placed), error)
            placed, seen = [], {}
        short = {
            o.id
            for o in placed
            if (now := seen.get(str(o.exchange_order_id))) and now.executed_size > o.filled_size
        }
        symbols = [*sweep, *{o.symbol.value for o in placed if o.id in short}]
        learned: dict[str, tuple[ExchangeExecution, str]] = {}
        for execution in self._latest_executions(dict.fromkeys(symbols)):
            order_id = self.by_exchange_id.get(execution.exchange_order_id)
            if order_id in short:
                learned.setdefault(execution.execution_id, (execution, "poll"))
            elif order_id is not None and order_id not in self._misses:
                learned.setdefault(execution.execution_id, (execution, "sweep"))
        for order in placed:
            if order.id in short:
                self._guarded(
                    order, self._missing_fills, seen[str(order.exchange_order_id)], learned
                )
        self.record_in_exchange_order(learned.values())
        for order in placed:
            self._guarded(order, self._follow, seen.get(str(order.exchange_order_id)))
        for order_id in list(self._latest):
            tracked = order_id in self._misses
            self._note(order_id, self._store.get_order(order_id) if tracked else None)
        return len(self._misses)

    def record_pushed(self, events: PrivateEvents) -> int:
        """Facts the exchange pushed (a private stream): its fills recorded in its order, then
        each changed order followed as a poll would, without asking the exchange anything.
        Returns how many orders are still live."""
        self.record_in_exchange_order((execution, "stream") for execution in events.executions)
        for seen in events.orders:
            order_id = self.by_exchange_id.get(seen.exchange_order_id)
            if order_id is None or order_id not in self._misses:
                continue
            self._misses[order_id] = 0
            self.record_exchange_order(seen)
            tracked = order_id in self._misses
            self._note(order_id, self._store.get_order(order_id) if tracked else None)
        return len(self._misses)

    def record_in_exchange_order(self, learned: Iterable[tuple[ExchangeExecution, str]]) -> int:
        """Record executions learned together (one poll, a reconciliation) in the exchange's
        order, oldest first, so the log, the exports and the tax computation see the buy
        before the sell; the exchange lists them newest first. Returns those recorded."""
        fresh = [item for item in learned if item[0].execution_id not in self._recorded]
        ordered = sorted(fresh, key=lambda item: execution_order(item[0]))
        return sum(self.record_execution(execution, source=source) for execution, source in ordered)

    def _missing_fills(
        self,
        order: Order,
        seen: ExchangeOrder,
        learned: dict[str, tuple[ExchangeExecution, str]],
    ) -> None:
        """Fills of `order` the latest-executions list did not reach (a busy account)."""
        listed = sum(
            (
                e.size
                for e, _ in learned.values()
                if e.exchange_order_id == order.exchange_order_id
                and e.execution_id not in order.execution_ids
            ),
            Decimal(0),
        )
        if seen.executed_size > order.filled_size + listed:
            for execution in self._broker.fetch_executions(seen.exchange_order_id):
                learned.setdefault(execution.execution_id, (execution, "poll"))

    def _guarded(self, order: Order, check: Callable[..., None], *facts: object) -> None:
        try:
            check(order, *facts)
        except BrokerError as error:
            log.warning("monitor: order %s not checked this round: %s", order.id, error)

    def _latest_executions(self, symbols: Iterable[str]) -> list[ExchangeExecution]:
        found: list[ExchangeExecution] = []
        for symbol in symbols:
            try:
                found += self._broker.recent_executions(symbol)
            except BrokerError as error:
                log.warning("monitor: latest executions on %s not read: %s", symbol, error)
        return found

    def _follow(self, order: Order, seen: ExchangeOrder | None) -> None:
        """One placed order against the exchange's view of it (None: not found)."""
        if seen is None:
            self._not_found(order)
            return
        self._misses[order.id] = 0
        self.record_exchange_order(seen)

    def _look_for_placement(self, order: Order) -> None:
        """A placement whose answer was lost: find the order at the exchange, or after several
        tries record that it was never placed. It is never sent again."""
        found = self._broker.find_order(
            request_for(order), order.created_on, exclude=set(self.by_exchange_id)
        )
        if found is not None:
            accepted = self._orders.accept(order.id, found.exchange_order_id)
            self.track(accepted)
            log.warning("order %s found at the exchange as %s", order.id, found.exchange_order_id)
            return
        misses = self._misses[order.id] = self._misses.get(order.id, 0) + 1
        if misses >= self._not_found_limit:
            self._orders.reject(
                order.id,
                "PLACEMENT_NOT_FOUND",
                f"no answer to the placement and not at the exchange after {misses} lookups",
            )
            self._misses.pop(order.id, None)

    def _not_found(self, order: Order) -> None:
        misses = self._misses[order.id] = self._misses.get(order.id, 0) + 1
        if misses < self._not_found_limit:
            return
        if order.status.is_live:
            lost = self._store.get_order(order.id)
            lost.declare_lost(
                f"exchange answered 'not found' {misses} times in a row", at=self._clock.now()
            )
            self._store.save(lost)
            log.error("order %s (%s) declared lost", order.id, order.exchange_order_id)
        self._misses.pop(order.id, None)

    # ----- stopping ---------------------------------------------------------------------------

    def cancel_open(self, reason: str) -> int:
        """Ask the exchange to cancel every live order it holds for us (CANCEL_OPEN_ORDERS_ON_STOP),
        then read their states once. A cancel the exchange refuses (already filled, or being
        changed) is left to the next start's reconciliation. Returns the cancels asked."""
        asked = 0
        for order_id in sorted(self.tracked):
            order = self._store.get_order(order_id)
            if not order.status.is_live or order.exchange_order_id is None:
                continue  # a placement still unknown has no id to cancel: the next start looks
            self._orders.request_cancel(order_id, reason)
            try:
                self._broker.cancel_order(order.exchange_order_id)
                asked += 1
            except BrokerError as error:
                log.warning("order %s not canceled at stop: %s", order_id, error)
        if asked:
            self.poll()
        return asked

    # ----- facts from the exchange (polling or, later, a private stream) ---------------------

    def record_execution(self, execution: ExchangeExecution, source: str = "poll") -> bool:
        """Record one execution of a known order. False if unknown or already recorded."""
        order_id = self.by_exchange_id.get(execution.exchange_order_id)
        if order_id is None:
            return False
        if execution.execution_id in self._recorded:
            return False
        order = self._store.get_order(order_id)
        if execution.execution_id in order.execution_ids:
            self._remember(execution.execution_id)
            return False
        position = self._store.find_position(order.exchange.value, order.symbol.value)
        trips_before = position.closed_trips if position is not None else 0
        fill = Execution(
            execution_id=execution.execution_id,
            side=execution.side,
            price=execution.price,
            size=execution.size,
            fee=execution.fee,
            executed_at=execution.timestamp,
        )
        recorded = self._orders.record_fill(order_id, fill, source=source)
        self._remember(execution.execution_id)
        if not recorded:
            return False
        if order_id in self._latest:
            # The exposure is what is still to fill: a fill recorded outside a poll's last
            # step (reconciliation's sweep, a private stream) lowers it now, or a signal decided
            # before the next poll counts this fill twice, in the position and the exposure.
            self._note(order_id, self._store.get_order(order_id))
        position = self._store.find_position(order.exchange.value, order.symbol.value)
        if position is not None and position.closed_trips > trips_before:
            self._on_result(order.symbol.value, position.last_trip_pnl or Decimal(0))
        return True

    def record_exchange_order(self, seen: ExchangeOrder) -> None:
        """The exchange's view of an order: a cancel or expiry there ends ours."""
        order_id = self.by_exchange_id.get(seen.exchange_order_id)
        if order_id is None:
            return
        order = self._store.get_order(order_id)
        if order.status.is_live and seen.status is OrderStatus.CANCELED:
            if seen.executed_size > order.filled_size:
                return  # executions not all visible yet: record them first, next round
            kind = seen.cancel_type or CancelType.EXCHANGE
            self._orders.cancel(order_id, kind, f"exchange: {seen.raw_status or 'CANCELED'}")
        elif order.status is OrderStatus.NEW and seen.status is OrderStatus.REJECTED:
            self._orders.reject(order_id, "EXCHANGE_REJECTED", seen.raw_status or "rejected")
        order = self._store.get_order(order_id)
        if order.is_terminal and seen.status.is_terminal:
            self._misses.pop(order_id, None)


def execution_order(execution: ExchangeExecution) -> tuple[datetime, str, int, str]:
    """The exchange's order of executions: time, then id, its trailing number compared as a
    number (GMO's ids are numbers, so 99 comes before 100; `sim-x9` before `sim-x10`)."""
    text = execution.execution_id
    stem = text.rstrip("0123456789")
    number = text[len(stem) :]
    return execution.timestamp, stem, int(number) if number else -1, text
