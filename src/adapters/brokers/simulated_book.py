"""Pure matching arithmetic for the simulated exchange: no state, no locks, Decimal only.

Kept apart from `simulated.py` so that the rules deciding *whether* and *at what price* an
order fills can be read on their own, without the bookkeeping (balances, positions, ids)
around them. Every product runs in `money_context()`, and every price or fee that leaves the
exchange is held to 8 places, so it fits the engine's DECIMAL(20,8) columns.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from trading_engine.domain.values import SCALE, ZERO, OrderType, Side, money_context

QUANTUM = Decimal(1).scaleb(-SCALE)


def to_scale(value: Decimal) -> Decimal:
    """`value` held to 8 places (half-even): what an exchange would report. Coarser values
    are kept as they are (no padding zeros)."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -SCALE:
        return value
    with money_context():
        return value.quantize(QUANTUM)


def is_multiple(value: Decimal, step: Decimal) -> bool:
    with money_context():
        return value % step == ZERO


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of `step` not above `value`: never fill more than there is."""
    if value <= ZERO:
        return ZERO
    with money_context():
        return (value / step).to_integral_value(ROUND_FLOOR) * step


def slipped(price: Decimal, side: Side, slippage: Decimal) -> Decimal:
    """The price a taker gets: always worse than the print (buys pay more, sells get less)."""
    with money_context():
        factor = Decimal(1) + slippage if side is Side.BUY else Decimal(1) - slippage
        return to_scale(price * factor)


def fee_of(price: Decimal, size: Decimal, rate: Decimal) -> Decimal:
    with money_context():
        return to_scale(price * size * rate)


def buy_cost(price: Decimal, size: Decimal, rate: Decimal) -> Decimal:
    """Quote a buy of `size` at `price` needs, fee included (what a spot buy reserves)."""
    with money_context():
        return price * size + price * size * rate


def trade_fill_price(
    order_type: OrderType,
    side: Side,
    limit: Decimal | None,
    trade_price: Decimal,
    slippage: Decimal,
) -> Decimal | None:
    """The price an order gets from one trade print, or None if the print does not reach it.

    A limit fills *at its limit* (no price improvement: the print only proves that someone
    traded there, not that our resting order would have been hit any better)."""
    if order_type is OrderType.MARKET:
        return slipped(trade_price, side, slippage)
    assert limit is not None
    if side is Side.BUY:
        return limit if trade_price <= limit else None
    return limit if trade_price >= limit else None


def bar_fill_price(
    order_type: OrderType,
    side: Side,
    limit: Decimal | None,
    bar: tuple[Decimal, Decimal, Decimal],
    slippage: Decimal,
) -> Decimal | None:
    """The price an order gets from one bar `(open, high, low)`, or None.

    Market orders take the open (the first price after they were placed, never one seen
    before). A limit the bar reaches fills at the limit, unless the bar *opened* through it
    (a gap): then the open is the first price available, and it is the better one."""
    bar_open, high, low = bar
    if order_type is OrderType.MARKET:
        return slipped(bar_open, side, slippage)
    assert limit is not None
    if side is Side.BUY:
        return min(limit, bar_open) if low <= limit else None
    return max(limit, bar_open) if high >= limit else None


def would_cross(side: Side, limit: Decimal, last: Decimal) -> bool:
    """Would a limit at `limit` trade at once against the last price (a taker, not a maker)?"""
    return limit >= last if side is Side.BUY else limit <= last


def base_and_quote(symbol: str, default_quote: str) -> tuple[str, str]:
    """`BTC` -> (BTC, JPY), `BTC/USDT` -> (BTC, USDT), `BTC_JPY` -> (BTC, JPY)."""
    for separator in ("/", "_"):
        if separator in symbol:
            base, quote = symbol.split(separator, 1)
            return base, quote
    return symbol, default_quote
