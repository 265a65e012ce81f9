"""Worked examples of the Order aggregate's rules (the property tests cover random sequences)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from trading_engine.domain.errors import IllegalOrderTransition, InvalidValue
from trading_engine.domain.models import Execution
from trading_engine.domain.order import Order, order_id_for
from trading_engine.domain.values import CancelType, OrderStatus, TimeInForce, money_context

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def limit_buy(size: str = "0.03", signal_id: str = "sig-1") -> Order:
    return Order.submit(
        signal_id=signal_id,
        exchange="gmo",
        symbol="BTC_JPY",
        side="BUY",
        order_type="LIMIT",
        size=size,
        price="15000000",
        at=T0,
    )


def execution(
    execution_id: str, size: str, price: str = "15000000", side: str = "BUY"
) -> Execution:
    return Execution(execution_id, side, Decimal(price), Decimal(size), Decimal("1"), T0)


def snapshot(order: Order) -> dict[str, object]:
    return {**order.__dict__, "_pending_events": list(order.pending_events)}


def test_order_id_is_derived_from_the_signal() -> None:
    assert limit_buy().id == order_id_for("sig-1") == limit_buy(size="1").id
    assert order_id_for("sig-1", leg=1) != order_id_for("sig-1")
    assert order_id_for("sig-2") != order_id_for("sig-1")


def test_submission_defaults_and_checks() -> None:
    order = limit_buy()
    assert order.status is OrderStatus.NEW
    assert order.time_in_force is TimeInForce.FAS
    market = Order.submit(
        signal_id="m",
        exchange="gmo",
        symbol="BTC",
        side="SELL",
        order_type="MARKET",
        size="1",
        at=T0,
    )
    assert market.time_in_force is TimeInForce.FAK
    assert market.price is None
    with pytest.raises(InvalidValue, match="needs a price"):
        Order.submit(
            signal_id="x",
            exchange="gmo",
            symbol="BTC",
            side="BUY",
            order_type="LIMIT",
            size="1",
            at=T0,
        )
    with pytest.raises(InvalidValue, match="takes no price"):
        Order.submit(
            signal_id="x",
            exchange="gmo",
            symbol="BTC",
            side="BUY",
            order_type="MARKET",
            size="1",
            price="1",
            at=T0,
        )


def test_partial_then_full_fill_with_weighted_average_price() -> None:
    order = limit_buy()
    order.accept("X1", at=T0)
    assert order.fill(execution("e1", "0.01", "14999000"))
    assert order.status is OrderStatus.PARTIALLY_FILLED
    assert order.fill(execution("e2", "0.02", "15000300"))
    assert order.status is OrderStatus.FILLED
    # (0.01 × 14,999,000 + 0.02 × 15,000,300) / 0.03 = 449,996 / 0.03 = 14,999,866.67
    assert order.filled_notional == Decimal("449996.000")
    with money_context():
        assert order.average_price == Decimal("449996") / Decimal("0.03")
    assert order.fees == Decimal(2)


def test_redelivered_execution_is_ignored() -> None:
    order = limit_buy()
    order.fill(execution("e1", "0.01"))
    version = order.version
    assert order.fill(execution("e1", "0.01")) is False
    assert order.version == version
    assert order.filled_size == Decimal("0.01")


def test_illegal_command_names_order_state_and_command_and_changes_nothing() -> None:
    order = limit_buy()
    order.fill(execution("e1", "0.03"))
    before = snapshot(order)
    with pytest.raises(IllegalOrderTransition) as refused:
        order.cancel(CancelType.USER, at=T0)
    assert str(order.id) in str(refused.value)
    assert "FILLED" in str(refused.value)
    assert "cancel" in str(refused.value)
    assert snapshot(order) == before


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (lambda o: o.fill(execution("e9", "0.04")), "overfill"),
        (lambda o: o.fill(execution("e9", "0.01", side="SELL")), "execution side SELL"),
        (lambda o: o.accept("OTHER", at=T0), "already accepted as X1"),
    ],
)
def test_refusals_while_live(command, expected: str) -> None:
    order = limit_buy()
    order.accept("X1", at=T0)
    before = snapshot(order)
    with pytest.raises(IllegalOrderTransition, match=expected):
        command(order)
    assert snapshot(order) == before


def test_rejection_only_from_new_and_final() -> None:
    order = limit_buy()
    order.reject("ERR-201", "Trading margin is insufficient", at=T0)
    assert order.status is OrderStatus.REJECTED
    assert order.reject_code == "ERR-201"
    for command in (
        lambda: order.fill(execution("e1", "0.01")),
        lambda: order.accept("X", at=T0),
        lambda: order.cancel("USER", at=T0),
        lambda: order.request_cancel("stop", at=T0),
        lambda: order.reject("ERR-5003", "again", at=T0),
    ):
        with pytest.raises(IllegalOrderTransition):
            command()
    partially = limit_buy(signal_id="sig-2")
    partially.fill(execution("e1", "0.01"))
    with pytest.raises(IllegalOrderTransition, match="PARTIALLY_FILLED; cannot reject"):
        partially.reject("ERR-1", "late", at=T0)


def test_late_fill_after_cancel_is_recorded_and_status_stays() -> None:
    order = limit_buy()
    order.fill(execution("e1", "0.01", "15000000"))
    assert order.request_cancel("stop", at=T0)
    assert order.request_cancel("stop again", at=T0) is False
    order.cancel("USER", "asked", at=T0 + timedelta(seconds=1))
    assert order.fill(execution("e2", "0.02", "15000300"))
    assert order.status is OrderStatus.CANCELED
    assert order.filled_size == Decimal("0.03")
    with money_context():
        assert order.average_price == (Decimal("150000") + Decimal("300006")) / Decimal("0.03")
    with pytest.raises(IllegalOrderTransition, match="overfill"):
        order.fill(execution("e3", "0.00000001"))


def test_expiry_is_a_cancel_with_a_reason() -> None:
    order = limit_buy()
    order.expire("end of trading day", at=T0)
    assert order.status is OrderStatus.CANCELED
    assert order.cancel_type is CancelType.EXPIRED
    assert order.cancel_reason == "end of trading day"
    with pytest.raises(IllegalOrderTransition):
        order.expire(at=T0)
