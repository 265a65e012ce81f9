"""From a signal to orders at the exchange: decide (risk, sizing), record, then send.

For each signal, in this order:
1. Its `SignalDecision` is loaded; a signal already decided is not decided again (a signal
   delivered twice yields one decision and one set of orders).
2. A signal whose bar closed too long ago on the feed's clock is refused as stale (live and
   paper trading; a backtest runs on its own clock and skips this).
3. The trading state is brought up to date (a drawdown halt may have rolled out of its window).
4. The orders are planned from the current position (sizing) and checked against the limits.
   A refusal is recorded with its reason; nothing is silently dropped.
5. The decision and its orders are saved in one transaction, *before* anything is sent: after
   a crash, the store says which orders were meant to exist, and reconciliation finds out
   whether each reached the exchange. An order is never sent twice.
6. Each order is sent once; the exchange's answer (its id, or a refusal with code and message)
   is recorded on the order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal

from app.log_events import log_event, order_event
from domain.models import Signal
from domain.order import Order
from domain.risk import RiskLimits, TradingControl, control_id_for, refusal_for
from domain.signal_age import SignalAgeLimit
from domain.signal_decision import SignalDecision, decision_id_for
from domain.sizing import PlannedOrder, SizingRefused, SymbolRules, plan_orders
from domain.values import ZERO, Exchange, OrderType
from ports.broker import (
    Broker,
    BrokerError,
    BrokerFatal,
    OrderRejected,
    OrderRequest,
    PlacementUnknown,
)
from ports.clock import Clock
from ports.event_store import ConcurrencyConflict, EventStore

log = logging.getLogger(__name__)


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
    ) -> None:
        self._store, self._broker, self._clock = store, broker, clock
        self._limits, self._settings = limits, settings
        # Live orders' unfilled size per symbol (the order monitor knows it): decisions count
        # it as position, or a burst of signals would act on fills not yet recorded.
        self._pending_exposure = pending_exposure or (lambda symbol: ZERO)

    # ----- the trading state ----------------------------------------------------------------

    def control(self) -> TradingControl:
        found = self._store.find(control_id_for(self._settings.exchange))
        if found is None:
            found = TradingControl.open(self._settings.exchange, at=self._clock.now())
        assert isinstance(found, TradingControl)
        return found

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
        for attempt in range(1, 6):
            control = self.control()
            change(control)
            try:
                self._store.save(control)
            except ConcurrencyConflict:
                if attempt == 5:
                    raise
                continue
            if control.state.value != "ACTIVE":
                log.warning("trading %s: %s", control.state.value, control.reason)
            return control
        raise AssertionError("unreachable")

    # ----- one signal -----------------------------------------------------------------------

    def handle(self, signal: Signal, age: timedelta | None = None) -> Outcome:
        """Decide on one signal. `age`: how long ago its bar closed, on the feed's clock;
        None: measured on this service's clock from the bar's end."""
        if str(signal.exchange) != self._settings.exchange:
            # Paper trading: the decision, orders and position are the paper venue's own.
            signal = replace(signal, exchange=Exchange(self._settings.exchange))
        existing = self._store.find(decision_id_for(signal.signal_id))
        if existing is not None and existing.outcome is not None:
            return Outcome(signal.signal_id, "duplicate", existing.reason, ())
        now = self._clock.now()
        decision = existing or SignalDecision.receive(signal, at=now)
        control = self.control()
        control.evaluate(self._limits, now=now)
        position = self._store.find_position(str(signal.exchange), str(signal.symbol))
        quantity = position.quantity if position is not None else ZERO
        quantity += self._pending_exposure(str(signal.symbol))
        age_limit = self._settings.signal_age
        if age is None:
            age = now - signal.timestamp
        stale = None if age_limit is None else age_limit.refusal(signal, age)
        try:
            planned = [] if stale else self._plan(signal, quantity)
            reason = stale or refusal_for(
                control.state, control.reason, quantity, planned, self._limits
            )
        except SizingRefused as refused:
            planned, reason = [], str(refused)
        if reason is not None:
            decision.refuse(reason, control.state.value, at=now)
            self._save_decision(decision, control)
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
        orders = [self._order(signal, plan, now) for plan in planned]
        decision.approve([o.id for o in orders], control.state.value, at=now)
        if not self._save_decision(decision, control, *orders):
            return Outcome(signal.signal_id, "duplicate", None, ())
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

    def _save_decision(self, decision: SignalDecision, *others: object) -> bool:
        """False when another process decided this signal first (it owns the orders)."""
        try:
            self._store.save(decision, *others)
        except ConcurrencyConflict:
            again = self._store.find(decision.id)
            if again is not None and again.outcome is not None:
                return False
            raise
        return True

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
