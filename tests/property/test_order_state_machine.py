"""Stateful property test: random command sequences against ONE Order aggregate.

A small reference model kept here decides, from the rules in `domain/order.py`'s docstring,
what each command must do:

* accept: sets the exchange order id once; the same id again is a no-op (returns False), a
  different id is refused; a REJECTED order refuses every accept.
* reject: only from NEW.
* fill: a redelivered execution id is ignored (returns False, nothing changes); otherwise a
  REJECTED order, a fill of the wrong side or a fill that would overfill is refused; NEW and
  PARTIALLY_FILLED move by the filled size; a CANCELED order records late fills but keeps
  its status.
* request_cancel: only while live (NEW / PARTIALLY_FILLED); a second request is a no-op.
* cancel / expire: only while live; the order ends CANCELED (EXPIRED for expire).

A refused command must raise `IllegalOrderTransition` and leave the aggregate exactly as it
was (no event, no attribute changed). After every step the invariants compare the aggregate
with the model, check the fill arithmetic exactly with `Fraction`, and rebuild the order from
every event it ever emitted.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from trading_engine.domain.errors import IllegalOrderTransition
from trading_engine.domain.models import Execution
from trading_engine.domain.order import Order
from trading_engine.domain.values import CancelType, OrderStatus, OrderType, Side

BASE = datetime(2026, 1, 1, tzinfo=UTC)
UNITS_PER_ONE = 10**8  # sizes are whole multiples of 1e-8 (DECIMAL(20,8))
SIZES = [
    Decimal(text)
    for text in ("0.00000001", "0.00000003", "0.01", "0.5", "1", "2.50", "12.34567891")
]
PRICES = st.decimals(
    min_value=Decimal("0.00000001"),
    max_value=Decimal("1000000"),
    places=8,
    allow_nan=False,
    allow_infinity=False,
)
FEES = st.one_of(
    st.just(Decimal(0)),
    st.decimals(min_value=Decimal(-5), max_value=Decimal(5), places=8),
)
REASONS = st.sampled_from(["", "user asked", "risk limit"])


def units(value: Fraction | Decimal) -> int:
    """`value` in units of 1e-8; it must be a whole number of them."""
    scaled = Fraction(value) * UNITS_PER_ONE
    assert scaled.denominator == 1, value
    return scaled.numerator


def size_of(unit_count: int) -> Decimal:
    return Decimal(unit_count).scaleb(-8)


@dataclass
class OrderModel:
    """What the order must look like, kept with exact fractions."""

    side: Side
    size: Fraction
    status: OrderStatus = OrderStatus.NEW
    exchange_order_id: str | None = None
    cancel_requested: bool = False
    cancel_type: CancelType | None = None
    cancel_reason: str | None = None
    reject_code: str | None = None
    filled: Fraction = Fraction(0)
    notional: Fraction = Fraction(0)
    fees: Fraction = Fraction(0)
    execution_ids: set[str] = field(default_factory=set)
    last_fill_at: datetime | None = None
    version: int = 1

    @property
    def remaining_units(self) -> int:
        return units(self.size - self.filled)

    @property
    def is_live(self) -> bool:
        return self.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


class OrderMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.order: Order
        self.model: OrderModel
        self.events: list[Any] = []  # every event the live order ever emitted, in order
        self.step = 0
        self.next_execution = 0
        self.terminal_status: OrderStatus | None = None

    # ----- helpers ------------------------------------------------------------------------

    def _at(self) -> datetime:
        self.step += 1
        return BASE + timedelta(seconds=self.step)

    def _new_execution_id(self) -> str:
        self.next_execution += 1
        return f"exec-{self.next_execution}"

    def _collect(self) -> None:
        self.events.extend(self.order.collect_events())

    def _snapshot(self) -> tuple[Any, ...]:
        order = self.order
        return (
            order.version,
            order.status,
            order.filled_size,
            str(order.filled_size),
            order.filled_notional,
            order.fees,
            frozenset(order.execution_ids),
            len(order.pending_events),
            order.exchange_order_id,
            order.cancel_requested,
            order.cancel_type,
            order.modified_on,
            copy.deepcopy(order.__dict__),
        )

    def _must_refuse(self, command: Any, *args: Any, **kwargs: Any) -> None:
        before = self._snapshot()
        with pytest.raises(IllegalOrderTransition) as refused:
            command(*args, **kwargs)
        assert refused.value.order_id == self.order.id
        assert self._snapshot() == before, "a refused command changed the order"

    def _must_ignore(self, command: Any, *args: Any, **kwargs: Any) -> None:
        before = self._snapshot()
        assert command(*args, **kwargs) is False
        assert self._snapshot() == before, "an ignored command changed the order"

    def _fill(self, execution: Execution, at: datetime | None) -> None:
        """Send `execution`; the model decides whether it is ignored, refused or applied."""
        model = self.model
        if execution.execution_id in model.execution_ids:
            self._must_ignore(self.order.fill, execution, at=at)
        elif (
            model.status is OrderStatus.REJECTED
            or execution.side is not model.side
            or model.filled + Fraction(execution.size) > model.size
        ):
            self._must_refuse(self.order.fill, execution, at=at)
        else:
            assert self.order.fill(execution, at=at) is True
            model.filled += Fraction(execution.size)
            model.notional += Fraction(execution.price) * Fraction(execution.size)
            model.fees += Fraction(execution.fee)
            model.execution_ids.add(execution.execution_id)
            model.last_fill_at = execution.executed_at
            model.version += 1
            if model.is_live:
                model.status = (
                    OrderStatus.FILLED
                    if model.filled == model.size
                    else OrderStatus.PARTIALLY_FILLED
                )
        self._collect()

    def _execution(
        self, unit_count: int, price: Decimal, fee: Decimal, side: Side | None = None
    ) -> Execution:
        return Execution(
            execution_id=self._new_execution_id(),
            side=side or self.model.side,
            price=price,
            size=size_of(unit_count),
            fee=fee,
            executed_at=self._at(),
        )

    # ----- creation -----------------------------------------------------------------------

    @initialize(
        side=st.sampled_from(Side),
        kind=st.sampled_from([OrderType.MARKET, OrderType.LIMIT]),
        size=st.sampled_from(SIZES),
        limit_price=PRICES,
    )
    def submit(self, side: Side, kind: OrderType, size: Decimal, limit_price: Decimal) -> None:
        self.order = Order.submit(
            signal_id="sig-state-machine",
            exchange="gmo",
            symbol="BTC_JPY",
            side=side,
            order_type=kind,
            size=size,
            price=limit_price if kind is OrderType.LIMIT else None,
            at=self._at(),
        )
        self.model = OrderModel(side=side, size=Fraction(size))
        assert self.order.status is OrderStatus.NEW
        assert self.order.version == 1
        assert len(self.order.pending_events) == 1
        assert self.order.average_price is None
        self._collect()

    # ----- accept / reject ----------------------------------------------------------------

    @rule(exchange_order_id=st.sampled_from(["EX-1", "EX-2"]))
    def accept(self, exchange_order_id: str) -> None:
        model, at = self.model, self._at()
        if model.status is OrderStatus.REJECTED:
            self._must_refuse(self.order.accept, exchange_order_id, at=at)
        elif model.exchange_order_id is None:
            assert self.order.accept(exchange_order_id, at=at) is True
            model.exchange_order_id = exchange_order_id
            model.version += 1
        elif model.exchange_order_id == exchange_order_id:
            self._must_ignore(self.order.accept, exchange_order_id, at=at)
        else:
            self._must_refuse(self.order.accept, exchange_order_id, at=at)
        self._collect()

    @precondition(lambda self: self.model.exchange_order_id is not None)
    @rule()
    def accept_same_id_again(self) -> None:
        self.accept(self.model.exchange_order_id)

    @rule(code=st.sampled_from(["ERR-201", "ERR-5003"]), message=st.text(max_size=10))
    def reject(self, code: str, message: str) -> None:
        model, at = self.model, self._at()
        if model.status is OrderStatus.NEW:
            self.order.reject(code, message, at=at)
            model.status = OrderStatus.REJECTED
            model.reject_code = code
            model.version += 1
        else:
            self._must_refuse(self.order.reject, code, message, at=at)
        self._collect()

    # ----- fills --------------------------------------------------------------------------

    @precondition(lambda self: self.model.remaining_units >= 2)
    @rule(data=st.data(), price=PRICES, fee=FEES, explicit_at=st.booleans())
    def fill_partially(
        self, data: st.DataObject, price: Decimal, fee: Decimal, explicit_at: bool
    ) -> None:
        count = data.draw(st.integers(1, self.model.remaining_units - 1), label="units")
        execution = self._execution(count, price, fee)
        self._fill(execution, self._at() if explicit_at else None)

    @precondition(lambda self: self.model.remaining_units >= 1)
    @rule(price=PRICES, fee=FEES)
    def fill_the_rest(self, price: Decimal, fee: Decimal) -> None:
        self._fill(self._execution(self.model.remaining_units, price, fee), None)

    @rule(extra=st.integers(1, 10**9), price=PRICES, fee=FEES)
    def fill_too_much(self, extra: int, price: Decimal, fee: Decimal) -> None:
        count = self.model.remaining_units + extra
        before = self.model.version
        self._fill(self._execution(count, price, fee), None)
        assert self.model.version == before  # an overfill can never be applied

    @precondition(lambda self: bool(self.model.execution_ids))
    @rule(
        data=st.data(),
        side=st.sampled_from(Side),
        count=st.integers(1, 10**10),
        price=PRICES,
        fee=FEES,
    )
    def redeliver_fill(
        self, data: st.DataObject, side: Side, count: int, price: Decimal, fee: Decimal
    ) -> None:
        used = data.draw(st.sampled_from(sorted(self.model.execution_ids)), label="id")
        execution = Execution(
            execution_id=used,
            side=side,
            price=price,
            size=size_of(count),
            fee=fee,
            executed_at=self._at(),
        )
        self._must_ignore(self.order.fill, execution)
        self._collect()

    @rule(data=st.data(), price=PRICES, fee=FEES)
    def fill_wrong_side(self, data: st.DataObject, price: Decimal, fee: Decimal) -> None:
        count = data.draw(st.integers(1, max(self.model.remaining_units, 1)), label="units")
        execution = self._execution(count, price, fee, side=self.model.side.opposite)
        self._must_refuse(self.order.fill, execution)
        self._collect()

    @precondition(
        lambda self: self.model.status is OrderStatus.CANCELED and self.model.remaining_units > 0
    )
    @rule(data=st.data(), price=PRICES, fee=FEES)
    def late_fill_after_cancel(self, data: st.DataObject, price: Decimal, fee: Decimal) -> None:
        count = data.draw(st.integers(1, self.model.remaining_units), label="units")
        self._fill(self._execution(count, price, fee), None)
        assert self.order.status is OrderStatus.CANCELED
        assert self.model.filled == Fraction(self.order.filled_size)

    # ----- cancel -------------------------------------------------------------------------

    @rule(reason=REASONS)
    def request_cancel(self, reason: str) -> None:
        model, at = self.model, self._at()
        if not model.is_live:
            self._must_refuse(self.order.request_cancel, reason, at=at)
        elif model.cancel_requested:
            self._must_ignore(self.order.request_cancel, reason, at=at)
        else:
            assert self.order.request_cancel(reason, at=at) is True
            model.cancel_requested = True
            model.version += 1
        self._collect()

    @rule(cancel_type=st.sampled_from(CancelType), reason=REASONS)
    def cancel(self, cancel_type: CancelType, reason: str) -> None:
        model, at = self.model, self._at()
        if model.is_live:
            self.order.cancel(cancel_type, reason, at=at)
            model.status = OrderStatus.CANCELED
            model.cancel_type = cancel_type
            model.cancel_reason = reason
            model.version += 1
        else:
            self._must_refuse(self.order.cancel, cancel_type, reason, at=at)
        self._collect()

    @rule(reason=REASONS)
    def expire(self, reason: str) -> None:
        model, at = self.model, self._at()
        if model.is_live:
            self.order.expire(reason, at=at)
            model.status = OrderStatus.CANCELED
            model.cancel_type = CancelType.EXPIRED
            model.cancel_reason = reason or "expired"
            model.version += 1
        else:
            self._must_refuse(self.order.expire, reason, at=at)
        self._collect()

    # ----- invariants ---------------------------------------------------------------------

    @invariant()
    def filled_size_is_within_bounds(self) -> None:
        order = self.order
        assert order.filled_size >= 0
        assert order.filled_size <= order.size
        assert order.remaining_size == order.size - order.filled_size

    @invariant()
    def status_agrees_with_filled_size(self) -> None:
        order = self.order
        if order.status is OrderStatus.NEW:
            assert order.filled_size == 0
        elif order.status is OrderStatus.PARTIALLY_FILLED:
            assert 0 < order.filled_size < order.size
        elif order.status is OrderStatus.FILLED:
            assert order.filled_size == order.size
        elif order.status is OrderStatus.REJECTED:
            assert order.filled_size == 0

    @invariant()
    def average_price_is_exact(self) -> None:
        order = self.order
        fills = [e for e in self.events if isinstance(e, Order.Filled)]
        filled = sum((Fraction(e.size) for e in fills), Fraction(0))
        notional = sum((Fraction(e.price) * Fraction(e.size) for e in fills), Fraction(0))
        assert Fraction(order.filled_size) == filled
        assert Fraction(order.filled_notional) == notional
        if not fills:
            assert order.average_price is None
            return
        average = order.average_price
        assert average is not None
        expected = notional / filled
        assert abs(Fraction(average) - expected) <= expected * Fraction(1, 10**20)
        prices = [Fraction(e.price) for e in fills]
        assert min(prices) <= Fraction(average) * (1 + Fraction(1, 10**20))
        assert Fraction(average) <= max(prices) * (1 + Fraction(1, 10**20))

    @invariant()
    def terminal_status_never_changes(self) -> None:
        status = self.order.status
        if self.terminal_status is not None:
            assert status is self.terminal_status
        elif status in (OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.CANCELED):
            self.terminal_status = status

    @invariant()
    def order_agrees_with_model(self) -> None:
        order, model = self.order, self.model
        assert order.status is model.status
        assert order.side is model.side
        assert Fraction(order.size) == model.size
        assert Fraction(order.filled_size) == model.filled
        assert Fraction(order.filled_notional) == model.notional
        assert Fraction(order.fees) == model.fees
        assert order.execution_ids == model.execution_ids
        assert order.exchange_order_id == model.exchange_order_id
        assert order.cancel_requested is model.cancel_requested
        assert order.cancel_type == model.cancel_type
        assert order.cancel_reason == model.cancel_reason
        assert order.reject_code == model.reject_code
        assert order.last_fill_at == model.last_fill_at
        assert order.version == model.version
        assert order.is_terminal is (model.status.is_terminal)

    @invariant()
    def replaying_the_events_rebuilds_the_order(self) -> None:
        assert not self.order.pending_events
        assert [e.originator_version for e in self.events] == list(range(1, self.order.version + 1))
        rebuilt = self.events[0].mutate(None)
        for event in self.events[1:]:
            rebuilt = event.mutate(rebuilt)
        assert rebuilt == self.order
        assert str(rebuilt.filled_size) == str(self.order.filled_size)
        assert str(rebuilt.filled_notional) == str(self.order.filled_notional)


OrderMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestOrderStateMachine = OrderMachine.TestCase


# ----- exactness whatever the caller's decimal context ------------------------------------


def test_filled_notional_is_exact_for_any_decimal_20_8_fill() -> None:
    big = Decimal("999999999999.99999999")
    order = Order.submit(
        signal_id="sig-big",
        exchange="gmo",
        symbol="BTC_JPY",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        size=big,
        at=BASE,
    )
    order.fill(Execution("exec-big", Side.BUY, big, big, Decimal(0), BASE))
    # 999999999999.99999999² = 999999999999999999980000.0000000000000001 (40 digits)
    assert Fraction(order.filled_notional) == Fraction(big) * Fraction(big)


def test_fill_arithmetic_ignores_the_callers_decimal_context() -> None:
    """A caller with a low-precision context must not round the order (replay would differ)."""
    order = Order.submit(
        signal_id="sig-ctx",
        exchange="gmo",
        symbol="BTC_JPY",
        side=Side.BUY,
        order_type=OrderType.MARKET,
        size=Decimal("1"),
        at=BASE,
    )
    price, size, fee = Decimal("12345678.12345678"), Decimal("0.5"), Decimal("0.12345678")
    with localcontext() as ctx:
        ctx.prec = 6
        order.fill(Execution("e1", Side.BUY, price, size, fee, BASE))
    assert order.filled_notional == Decimal("6172839.061728390")
    assert order.fees == fee
    replayed = None
    for event in order.collect_events():
        replayed = event.mutate(replayed)
    assert replayed == order
