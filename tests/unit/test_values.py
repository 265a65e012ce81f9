"""Bad input to the domain's values is refused with an error naming the field and the reason."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.values import (
    Exchange,
    OrderStatus,
    OrderType,
    Side,
    SignalAction,
    Symbol,
    Timeframe,
    TimeInForce,
    decimal_of,
    positive,
)


@pytest.mark.parametrize(
    ("kind", "bad"),
    [
        (Side, "HOLD"),
        (OrderType, "ICEBERG"),
        (TimeInForce, "GTD"),
        (OrderStatus, "OPEN"),
        (SignalAction, "buy_the_dip"),
        (Side, None),
    ],
)
def test_unknown_enum_values_are_refused(kind: type, bad: object) -> None:
    with pytest.raises(InvalidValue) as refused:
        kind.parse(bad)
    assert "expected one of" in str(refused.value)


def test_enum_parsing_is_forgiving_about_case_and_spaces_only() -> None:
    assert Side.parse(" buy ") is Side.BUY
    assert SignalAction.parse("enter_long") is SignalAction.ENTER_LONG
    with pytest.raises(InvalidValue):
        SignalAction.parse("ENTER_LONG")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("1.123456789", "more than 8 decimal places"),
        (Decimal("0.000000001"), "more than 8 decimal places"),
        ("1000000000000", "more than 12 integer digits"),
        ("1" * 30 + ".123456789", "more than 12 integer digits"),
        (0.1, "floats are inexact"),
        ("NaN", "must be finite"),
        ("Infinity", "must be finite"),
        ("abc", "not a number"),
        (True, "floats are inexact"),
        ([1], "expected a Decimal"),
    ],
)
def test_amounts_that_do_not_fit_decimal_20_8_are_refused(value: object, reason: str) -> None:
    with pytest.raises(InvalidValue, match=reason):
        decimal_of("price", value)


def test_exact_amounts_are_kept_as_given() -> None:
    assert decimal_of("size", "0.010").as_tuple() == Decimal("0.010").as_tuple()
    assert decimal_of("size", "1.500000000") == Decimal("1.5")  # zeros past 8 places are exact
    assert decimal_of("price", "999999999999.99999999") == Decimal("999999999999.99999999")


@pytest.mark.parametrize("value", ["0", "-1", "-0.00000001", 0])
def test_sizes_must_be_positive(value: object) -> None:
    with pytest.raises(InvalidValue, match="greater than zero"):
        positive("size", value)


@pytest.mark.parametrize("bad", ["", "GMO", "gmo coin", "1gmo"])
def test_exchange_ids(bad: str) -> None:
    assert str(Exchange("gmo")) == "gmo"
    with pytest.raises(InvalidValue):
        Exchange(bad)


@pytest.mark.parametrize(
    "good",
    ["BTC", "BTC_JPY", "BTC/USDT", "ETH", "BTC/USDT:USDT", "EURUSD_NO_VOLUME", "BTC-USD", "BRK.B"],
)
def test_symbols(good: str) -> None:
    assert str(Symbol(good)) == good
    assert Symbol("BTC_JPY").is_gmo_leverage
    assert not Symbol("BTC").is_gmo_leverage
    for bad in ("btc", "BTC JPY", "", "BTC__JPY", "_BTC", "BTC/", "BTC/USDT/X", "A" * 21):
        with pytest.raises(InvalidValue):
            Symbol(bad)


def test_timeframes() -> None:
    assert [Timeframe(t).seconds for t in ("1s", "1m", "5m", "15m", "1h", "1d")] == [
        1,
        60,
        300,
        900,
        3600,
        86400,
    ]
    for bad in ("0m", "1y", "m", "1.5m", ""):
        with pytest.raises(InvalidValue):
            Timeframe(bad)


def test_naive_datetimes_are_refused_by_commands() -> None:
    from trading_engine.domain.order import Order

    with pytest.raises(InvalidValue, match="timezone-aware"):
        Order.submit(
            signal_id="s",
            exchange="gmo",
            symbol="BTC",
            side="BUY",
            order_type="MARKET",
            size="1",
            at=datetime(2026, 1, 1),
        )
