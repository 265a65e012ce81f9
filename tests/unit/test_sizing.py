"""Signal actions to orders: legs, rounding, minimum size, GMO's close-only settlement."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trading_engine.domain.sizing import GMO_RULES, PlannedOrder, SizingRefused, plan_orders
from trading_engine.domain.values import OrderType, Side, SignalAction

D = Decimal


def plan(
    action: str,
    position: str,
    *,
    symbol: str = "BTC_JPY",
    size: str = "0.0105",
    order_type: OrderType = OrderType.MARKET,
    allow_short: bool = True,
) -> list[PlannedOrder]:
    return plan_orders(
        SignalAction.parse(action),
        D(position),
        order_size=D(size),
        order_type=order_type,
        price_ref=D("15000000.6"),
        rules=GMO_RULES[symbol],
        allow_short=allow_short,
    )


def test_enter_long_from_flat_rounds_down_to_the_step() -> None:
    assert plan("enter_long", "0") == [
        PlannedOrder(0, Side.BUY, OrderType.MARKET, D("0.010"), None, "OPEN")
    ]


def test_no_pyramiding_and_hold_does_nothing() -> None:
    assert plan("enter_long", "0.01") == []
    assert plan("enter_short", "-0.01") == []
    assert plan("hold", "0.01") == []
    assert plan("exit", "0") == []


def test_exit_on_leverage_goes_through_close() -> None:
    assert plan("exit", "0.02") == [
        PlannedOrder(0, Side.SELL, OrderType.MARKET, D("0.020"), None, "CLOSE")
    ]
    assert plan("exit", "-0.02")[0].side is Side.BUY


def test_exit_on_spot_is_a_plain_sell() -> None:
    (order,) = plan("exit", "0.5", symbol="BTC")
    assert (order.side, order.settle) == (Side.SELL, "OPEN")


def test_flip_closes_then_opens_in_two_legs() -> None:
    orders = plan("enter_short", "0.02")
    assert [(o.leg, o.side, o.size, o.settle) for o in orders] == [
        (0, Side.SELL, D("0.020"), "CLOSE"),
        (1, Side.SELL, D("0.010"), "OPEN"),
    ]


def test_limit_prices_round_to_the_tick_without_chasing() -> None:
    buy = plan("enter_long", "0", order_type=OrderType.LIMIT)[0]
    sell = plan("enter_short", "0", order_type=OrderType.LIMIT)[0]
    assert buy.price == D("15000000")
    assert sell.price == D("15000001")


def test_a_reversal_too_small_to_open_still_closes() -> None:
    orders = plan("enter_short", "0.02", size="0.0009")
    assert [(o.leg, o.side, o.size, o.settle) for o in orders] == [
        (0, Side.SELL, D("0.020"), "CLOSE")
    ]


def test_refusals() -> None:
    with pytest.raises(SizingRefused, match=r"below the minimum size 0\.001"):
        plan("enter_long", "0", size="0.0009")
    with pytest.raises(SizingRefused, match="shorting is disabled"):
        plan("enter_short", "0", allow_short=False)
