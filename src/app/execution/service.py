"""From a signal to orders at the exchange: decide (risk, sizing), record, then send.

For each signal, in this order:
1. A signal whose bar closed too long ago on the feed's clock is refused as stale (live and
   paper trading; a backtest runs on its own clock and skips this).
2. The trading state is brought up to date (a drawdown halt may have rolled out of its window).
3. The orders are planned from the current position (sizing) and checked against the limits.
   A refusal is recorded with its reason; nothing is silently dropped.
4. The decision and its orders are saved in one transaction, *before* anything is sent: after
   a crash, the store says which orders were meant to exist, and reconciliation finds out
   whether each reached the exchange. An order is never sent twice. The decision's id derives
   from the signal's, so a signal delivered twice meets its first decision right there: the
   save is refused (the decision exists at version 1) and the signal is a duplicate.
5. Each order is sent once; the exchange's answer (its id, or a refusal with code and message)
   is recorded on the order.

Between a signal's arrival and its order request there is no database read and one write
(step 4), when the service runs in the execution loop: the loop's store keeps the account's
positions in memory (app/execution/sole_writer.py), and the trading control is kept here and
read again only when its watch says another process changed it (an operator's `risk halt`, see
ports/change_watch.py). Without a watch (the `risk` commands) it is read on every use.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal

from trading_engine.app.execution.sole_writer import SoleWriterStore
from trading_engine.app.runtime.log_events import log_event, order_event
from trading_engine.domain.errors import DuplicateOrder
from trading_engine.domain.models import Signal
from trading_engine.domain.order import Order
from trading_engine.domain.risk import RiskLimits, TradingControl, control_id_for, refusal_for
from trading_engine.domain.signal_age import SignalAgeLimit
from trading_engine.domain.signal_decision import SignalDecision
from trading_engine.domain.sizing import PlannedOrder, SizingRefused, SymbolRules, plan_orders
from trading_engine.domain.values import ZERO, Exchange, OrderType
from trading_engine.ports.broker import (
    Broker,
    BrokerError,
    BrokerFatal,
    OrderRejected,
    OrderRequest,
    PlacementUnknown,
)
from trading_engine.ports.change_watch import ChangeWatch
from trading_engine.ports.clock import Clock
from trading_engine.ports.event_store import ConcurrencyConflict, EventStore

log = logging.getLogger(__name__)
# Saves of a decision refused because the trading control changed under it (an operator's
# halt saved in between): each time the decision is made again on the new state.
DECISION_ATTEMPTS = 3


# How big a new position is: (signal, current signed quantity) -> size. None: `order_size`.
Sizer = Callable[[Signal, Decimal], Decimal]


@dataclass(frozen=True, slots=True)
class ExecutionSettings:
    exchange: str
    order_type: OrderType
    order_size: Decimal
    allow_short: bool
    rules: dict[str, SymbolRules]
    sizer: Sizer | None = None
    signal_age: SignalAgeLimit | None = None  # None: no signal is refused for its age


@dataclass(frozen=True, slots=True)
class Outcome:
    signal_id: str
    outcome: str  # "approved", "refused", "duplicate"
    reason: str | None
    orders: tuple[Order, ...]


class ExecutionService:
    def __init__(
        self,
        store: EventStore,
        broker: Broker,
        clock: Clock,
        limits: RiskLimits,
        settings: ExecutionSettings,
        pending_exposure: Callable[[str], Decimal] | None = None,
        control_watch: ChangeWatch | None = None,
    ) -> None:
        self._store, self._broker, self._clock = store, broker, clock
        self._limits, self._settings = limits, settings
        # Live orders' unfilled size per symbol (the order monitor knows it), for a store that
        # does not keep it itself (a SoleWriterStore does, consistent with its positions).
        self._pending_exposure = pending_exposure or (lambda symbol: ZERO)
        self._watch = control_watch
        self._control_id = control_id_for(settings.exchange)
        self._control: TradingControl | None = None  # kept between signals with a watch
        # The control is changed by signals and by results the order monitor reports: one
        # at a time, whichever thread they come from.
        self._lock = threading.RLock()

    # ----- the trading state ----------------------------------------------------------------

    def control(self) -> TradingControl:
        """The trading state of this account. With a watch, the one kept in memory, read
        again only when another writer changed it; without, read from the store."""
        with self._lock:
            control = self._control
            changed = self._watch is None or self._watch.changed_since(
                0 if control is None else control.version
            )
            if control is None or changed:
                control = self._control = self._load_control()
            return control

    def refresh_control(self) -> None:
        """Read the trading state again (the execution loop does so at each order poll: what
        a watch could miss is then at most one poll interval old). Off the signal path, and
        read outside the lock: a signal decided meanwhile does not wait for it."""
        loaded = self._load_control()
        with self._lock:
            if self._control is None or loaded.version >= self._control.version:
                self._control = loaded

    def reset_state(self) -> None:
        """Forget what is kept in memory (the trading state, the positions) and read it
        again from the store: at start, and after a restart once a server was away."""
        with self._lock:
            self._forget_control()
            if isinstance(self._store, SoleWriterStore):
                self._store.forget()
            if self._watch is not None:
                self.control()  # the watch connects (and LISTENs) before the first signal

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()

    def _load_control(self) -> TradingControl:
        found = self._store.find(self._control_id)
        if found is None:
            found = TradingControl.open(self._settings.exchange, at=self._clock.now())
        assert isinstance(found, TradingControl)
        return found

    def _forget_control(self) -> None:
        """After a save of the control failed (its state in memory may be ahead of the
        store): read it again at the next use. A store that hands out its cached aggregates
        (a backtest's) would hand out that same object again: it is evicted there."""
        self._control = None
        if getattr(self._store, "sole_writer", False):
            self._store.evict(self._control_id)  # type: ignore[attr-defined]

    def record_result(self, symbol: str, pnl: Decimal) -> TradingControl:
        """A round trip closed: count it for the limits (and move the state if one is hit)."""
        return self._update_control(
            lambda c: c.record_result(symbol, pnl, self._limits, at=self._clock.now())
        )

    def halt(self, reason: str) -> TradingControl:
        """The kill switch: nothing is sent until `resume`."""
        return self._update_control(lambda c: c.halt(reason, at=self._clock.now()))

    def reduce_only(self, reason: str) -> TradingControl:
        return self._update_control(lambda c: c.reduce_only(reason, at=self._clock.now()))

    def resume(self, reason: str) -> TradingControl:
        return self._update_control(lambda c: c.resume(reason, at=self._clock.now()))

    def _update_control(self, change: Callable[[TradingControl], None]) -> TradingControl:
        with self._lock:
            for attempt in range(1, 6):
                control = self.control()
                change(control)
                try:
                    self._store.save(control)
                except ConcurrencyConflict:
                    self._forget_control()
                    if attempt == 5:
                        raise
                    continue
                except BaseException:
                    self._forget_control()
                    raise
                if control.state.value != "ACTIVE":
                    log.warning("trading %s: %s", control.state.value, control.reason)
                return control
        raise AssertionError("unreachable")

    def _quantity(self, exchange: str, symbol: str) -> Decimal:
        """The position plus the unfilled size of the live orders: a decision must assume
        those fills may already have happened at the exchange (a burst of signals would
        otherwise act on fills not yet recorded)."""
        if isinstance(self._store, SoleWriterStore):
            return self._store.quantity_with_live_orders(exchange, symbol)
        position = self._store.find_position(exchange, symbol)
        quantity = position.quantity if position is not None else ZERO
        return quantity + self._pending_exposure(symbol)

    # ----- one signal -----------------------------------------------------------------------

    def handle(self, signal: Signal, age: timedelta | None = None) -> Outcome:
        """Decide on one signal. `age`: how long ago its bar closed, on the feed's clock;
        None: measured on this service's clock from the bar's end."""
        if str(signal.exchange) != self._settings.exchange:
            # Paper trading: the decision, orders and position are the paper venue's own.
            signal = replace(signal, exchange=Exchange(self._settings.exchange))
        with self._lock:
            decided = self._decide(signal, age)
        if isinstance(decided, Outcome):
            return decided
        control, orders, quantity, reason = decided
        if reason is not None:
            log_event(
                log,
                "rejection",
                "signal %s refused: %s",
                signal.signal_id,
                reason,
                correlation_id=signal.signal_id,
                level=logging.WARNING,
                stage="risk",
                reason=reason,
                trading_state=control.state.value,
                symbol=str(signal.symbol),
                action=str(signal.action),
            )
            return Outcome(signal.signal_id, "refused", reason, ())
        if not orders:  # e.g. an exit with no position open: recorded, and said so here
            log_event(
                log,
                "decision",
                "signal %s: no order needed (%s with a position of %s)",
                signal.signal_id,
                signal.action,
                quantity,
                correlation_id=signal.signal_id,
                action=str(signal.action),
                position=str(quantity),
                symbol=str(signal.symbol),
            )
        sent = tuple(self.send(order) for order in orders)
        return Outcome(signal.signal_id, "approved", None, sent)

    def _decide(
        self, signal: Signal, age: timedelta | None
    ) -> Outcome | tuple[TradingControl, list[Order], Decimal, str | None]:
        """Steps 1 to 4: the decision and its orders saved, and what was decided on (the
        trading state, the orders, the quantity, the refusal's reason or None); or the
        outcome of a signal decided before."""
        found: SignalDecision | None = None  # recorded undecided (by an older engine)
        for attempt in range(1, DECISION_ATTEMPTS + 1):
            now = self._clock.now()
            decision = found or SignalDecision.receive(signal, at=now)
            control = self.control()
            control.evaluate(self._limits, now=now)
            quantity = self._quantity(str(signal.exchange), str(signal.symbol))
            age_limit = self._settings.signal_age
            stale = None
            if age_limit is not None:
                stale = age_limit.refusal(signal, now - signal.timestamp if age is None else age)
            try:
                planned = [] if stale else self._plan(signal, quantity)
                reason = stale or refusal_for(
                    control.state, control.reason, quantity, planned, self._limits
                )
            except SizingRefused as refused:
                planned, reason = [], str(refused)
            orders: list[Order] = []
            if reason is not None:
                decision.refuse(reason, control.state.value, at=now)
            else:
                orders = [self._order(signal, plan, now) for plan in planned]
                decision.approve([o.id for o in orders], control.state.value, at=now)
            try:
                self._store.save(decision, control, *orders)
            except (ConcurrencyConflict, DuplicateOrder):
                # Decided before (a redelivery), or the control changed since it was read.
                self._forget_control()
                found = self._store.find(decision.id)
                if found is not None and found.outcome is not None:
                    return Outcome(signal.signal_id, "duplicate", found.reason, ())
                if attempt == DECISION_ATTEMPTS:
                    raise
                continue
            except BaseException:
                self._forget_control()  # its events may be in memory and not in the store
                raise
            return control, orders, quantity, reason
        raise AssertionError("unreachable")

    def _plan(self, signal: Signal, quantity: Decimal) -> list[PlannedOrder]:
        rules = self._settings.rules.get(str(signal.symbol))
        if rules is None:
            raise SizingRefused(f"no size/tick rules configured for {signal.symbol}")
        return plan_orders(
            signal.action,
            quantity,
            order_size=(
                self._settings.sizer(signal, quantity)
                if self._settings.sizer is not None
                else self._settings.order_size
            ),
            order_type=self._settings.order_type,
            price_ref=signal.price_ref,
            rules=rules,
            allow_short=self._settings.allow_short,
        )

    @staticmethod
    def _order(signal: Signal, plan: PlannedOrder, now: object) -> Order:
        return Order.submit(
            signal_id=signal.signal_id,
            exchange=signal.exchange,
            symbol=signal.symbol,
            side=plan.side,
            order_type=plan.order_type,
            size=plan.size,
            price=plan.price,
            leg=plan.leg,
            settle=plan.settle,
            at=now,  # type: ignore[arg-type]
        )

    # ----- sending --------------------------------------------------------------------------

    def send(self, order: Order) -> Order:
        """Send a recorded order once and record the exchange's answer."""
        request = request_for(order)
        try:
            exchange_order_id = self._broker.place_order(request)
        except OrderRejected as refused:
            order.reject(refused.code or "REJECTED", refused.message, at=self._clock.now())
            self._store.save(order)
            order_event(log, order, "rejection", f"rejected by {self._broker.name}: {refused}")
            return order
        except PlacementUnknown as unknown:
            # Left NEW without an exchange id: reconciliation looks for it; never re-sent.
            order_event(
                log,
                order,
                "order",
                f"placement unknown, reconciliation will look: {unknown}",
                level=logging.ERROR,
            )
            return order
        except BrokerFatal:
            raise
        except BrokerError as failed:
            # Not placed (maintenance, still rate limited, cannot connect): the signal's moment
            # has passed; record the refusal with the exchange's code rather than retry late.
            order.reject(failed.code or type(failed).__name__, failed.message, at=self._clock.now())
            self._store.save(order)
            order_event(log, order, "rejection", f"not placed: {failed}")
            return order
        order.accept(exchange_order_id, at=self._clock.now())
        self._store.save(order)
        order_event(log, order, "order", f"placed at {self._broker.name}")
        return order


def request_for(order: Order) -> OrderRequest:
    return OrderRequest(
        client_order_id=str(order.id),
        symbol=str(order.symbol),
        side=order.side,
        order_type=order.order_type,
        size=order.size,
        price=order.price,
        time_in_force=order.time_in_force,
        settle=order.settle,
    )
