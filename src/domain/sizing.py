"""From a signal's action to the orders that carry it out, sized and rounded for the symbol.

* `hold` does nothing; `enter_long` while long (or `enter_short` while short) does nothing
  either: one position per symbol, no pyramiding.
* `exit` closes the whole position; entering the other way first closes the current one
  (leg 0) and then opens the new one (leg 1): two orders, two deterministic order ids.
* On GMO's leverage symbols (`_JPY`) a new order always *opens* a position, so every close is
  marked `CLOSE`, for the broker to send through the close endpoints; on spot a sell is a sell.
* Sizes are rounded down to the size step (never trade more than asked), limit prices to the
  tick on the side that does not chase (buy down, sell up); below the minimum size is refused,
  except the opening leg of a reversal: then the close alone is sent (what is left cannot pay
  for the new position, but the signal still ends the old one).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from trading_engine.domain.errors import DomainError
from trading_engine.domain.values import (
    ZERO,
    OrderType,
    Side,
    SignalAction,
    Symbol,
    money_context,
    positive,
)


class SizingRefused(DomainError):
    """The signal cannot become an order (too small, shorting disabled, ...)."""


@dataclass(frozen=True, slots=True)
class SymbolRules:
    symbol: Symbol
    min_size: Decimal
    size_step: Decimal
    tick_size: Decimal

    def __post_init__(self) -> None:
        for name in ("min_size", "size_step", "tick_size"):
            object.__setattr__(self, name, positive(name, getattr(self, name)))


# From GMO's /v1/symbols (see gmo-api.md); other symbols must be configured.
GMO_RULES = {
    "BTC": SymbolRules(Symbol("BTC"), Decimal("0.00001"), Decimal("0.00001"), Decimal("1")),
    "BTC_JPY": SymbolRules(Symbol("BTC_JPY"), Decimal("0.001"), Decimal("0.001"), Decimal("1")),
    "XRP": SymbolRules(Symbol("XRP"), Decimal("1"), Decimal("1"), Decimal("0.001")),
}


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    leg: int
    side: Side
    order_type: OrderType
    size: Decimal
    price: Decimal | None
    settle: str  # "OPEN" or "CLOSE"


def round_size(size: Decimal, rules: SymbolRules) -> Decimal:
    with money_context():
        return (size / rules.size_step).to_integral_value(ROUND_FLOOR) * rules.size_step


def round_price(price: Decimal, side: Side, rules: SymbolRules) -> Decimal:
    rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
    with money_context():
        return (price / rules.tick_size).to_integral_value(rounding) * rules.tick_size


def plan_orders(
    action: SignalAction,
    position: Decimal,
    *,
    order_size: Decimal,
    order_type: OrderType,
    price_ref: Decimal,
    rules: SymbolRules,
    allow_short: bool,
) -> list[PlannedOrder]:
    """The orders that take `position` (signed: long > 0) where `action` says."""
    leverage = rules.symbol.is_gmo_leverage
    close_settle = "CLOSE" if leverage else "OPEN"
    planned: list[tuple[Side, Decimal, str]] = []
    if action is SignalAction.HOLD:
        return []
    if action is SignalAction.EXIT:
        if position > ZERO:
            planned.append((Side.SELL, position, close_settle))
        elif position < ZERO:
            planned.append((Side.BUY, -position, close_settle))
    elif action is SignalAction.ENTER_LONG:
        if position > ZERO:
            return []
        if position < ZERO:
            planned.append((Side.BUY, -position, close_settle))
        planned.append((Side.BUY, order_size, "OPEN"))
    elif action is SignalAction.ENTER_SHORT:
        if not allow_short:
            raise SizingRefused("enter_short refused: shorting is disabled (ENABLE_SHORTING)")
        if position < ZERO:
            return []
        if position > ZERO:
            planned.append((Side.SELL, position, close_settle))
        planned.append((Side.SELL, order_size, "OPEN"))
    orders = []
    for leg, (side, size, settle) in enumerate(planned):
        rounded = round_size(size, rules)
        if rounded < rules.min_size and leg > 0:
            # A reversal the account cannot afford still closes what the signal ends (as
            # backtesting.py's `position.close(); buy()` does when the buy sizes to nothing).
            break
        if rounded < rules.min_size:
            raise SizingRefused(
                f"{side} {size} {rules.symbol} is below the minimum size {rules.min_size} "
                f"(step {rules.size_step})"
            )
        price = None
        if order_type is not OrderType.MARKET:
            price = round_price(price_ref, side, rules)
        orders.append(PlannedOrder(leg, side, order_type, rounded, price, settle))
    return orders
