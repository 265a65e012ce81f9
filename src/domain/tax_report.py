"""What a tax report says (`tax.py` computes it): the fills it is computed from, each line
(acquisition, disposal, closing, what is open at year end) with proceeds, cost and fees, the
totals per symbol and for the year, and the JST calendar year a moment falls in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from trading_engine.domain.values import ZERO, Side, Symbol, _ParsedEnum, aware, money_context

JST = timezone(timedelta(hours=9), "JST")  # Japan has no daylight saving time


def jst_year(moment: datetime) -> int:
    """The Japanese calendar year of an aware moment."""
    return aware("time", moment).astimezone(JST).year


def is_margin(symbol: str) -> bool:
    """GMO's leverage symbols (`BTC_JPY`): taxed on closing, like short sales."""
    return Symbol(symbol).is_gmo_leverage


class Method(_ParsedEnum):
    MOVING_AVERAGE = "moving-average"
    TOTAL_AVERAGE = "total-average"

    @classmethod
    def _upper(cls) -> bool:
        return False

    @classmethod
    def _field(cls) -> str:
        return "method"


@dataclass(frozen=True, slots=True)
class TaxFill:
    """One execution, as the tax computation needs it."""

    time: datetime
    exchange: str
    symbol: str
    side: Side
    price: Decimal
    size: Decimal
    fee: Decimal

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", aware("time", self.time))
        object.__setattr__(self, "side", Side.parse(self.side))


@dataclass(frozen=True, slots=True)
class Holding:
    """A spot holding and its acquisition cost (fees included)."""

    quantity: Decimal = ZERO
    cost: Decimal = ZERO

    @property
    def unit_cost(self) -> Decimal | None:
        if self.quantity == ZERO:
            return None
        with money_context():
            return self.cost / self.quantity


@dataclass(frozen=True, slots=True)
class Acquisition:
    time: datetime
    exchange: str
    quantity: Decimal
    price: Decimal
    fee: Decimal

    @property
    def cost(self) -> Decimal:
        with money_context():
            return self.price * self.quantity + self.fee


@dataclass(frozen=True, slots=True)
class Disposal:
    """A spot sale: its cost is the holding's unit cost (by the method) × quantity."""

    time: datetime
    exchange: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    unit_cost: Decimal
    cost: Decimal

    @property
    def proceeds(self) -> Decimal:
        with money_context():
            return self.price * self.quantity

    @property
    def fees(self) -> Decimal:
        return self.fee

    @property
    def gain(self) -> Decimal:
        with money_context():
            return self.proceeds - self.fee - self.cost


@dataclass(frozen=True, slots=True)
class Closing:
    """A fill (or the part of one) that closes a margin position or a short sale."""

    time: datetime
    exchange: str
    side: Side  # of the closing fill: SELL closes a long, BUY a short
    quantity: Decimal
    price: Decimal
    proceeds: Decimal
    cost: Decimal
    fees: Decimal  # entry fees released + the closing fill's share of its fee
    gain: Decimal  # the realized PnL of the Position aggregate


@dataclass(frozen=True, slots=True)
class OpenPosition:
    """A margin position (or a short sale) open at year end: no gain until it is closed."""

    exchange: str
    quantity: Decimal  # signed: long > 0, short < 0
    average_price: Decimal


@dataclass(frozen=True, slots=True)
class Totals:
    proceeds: Decimal = ZERO
    cost: Decimal = ZERO
    fees: Decimal = ZERO
    realized_gain: Decimal = ZERO

    def __add__(self, other: Totals) -> Totals:
        with money_context():
            return Totals(
                self.proceeds + other.proceeds,
                self.cost + other.cost,
                self.fees + other.fees,
                self.realized_gain + other.realized_gain,
            )


@dataclass(frozen=True, slots=True)
class SymbolReport:
    """One symbol's year: what was bought and sold, the gains, what is carried out."""

    symbol: str
    kind: str  # "spot" or "margin"
    method: Method
    year: int
    trades: int  # fills in the year
    carried_in: Holding
    acquisitions: tuple[Acquisition, ...]
    disposals: tuple[Disposal, ...]
    closings: tuple[Closing, ...]
    carried_out: Holding
    open_positions: tuple[OpenPosition, ...]
    unit_cost: Decimal | None  # the year's unit cost (total-average; None when nothing held)

    @property
    def totals(self) -> Totals:
        with money_context():
            lines = [*self.disposals, *self.closings]
            return Totals(
                sum((line.proceeds for line in lines), ZERO),
                sum((line.cost for line in lines), ZERO),
                sum((line.fees for line in lines), ZERO),
                sum((line.gain for line in lines), ZERO),
            )

    @property
    def proceeds(self) -> Decimal:
        return self.totals.proceeds

    @property
    def cost(self) -> Decimal:
        return self.totals.cost

    @property
    def fees(self) -> Decimal:
        return self.totals.fees

    @property
    def realized_gain(self) -> Decimal:
        return self.totals.realized_gain


@dataclass(frozen=True, slots=True)
class TaxReport:
    year: int
    method: Method
    symbols: tuple[SymbolReport, ...]

    @property
    def trades(self) -> int:
        return sum(s.trades for s in self.symbols)

    @property
    def empty(self) -> bool:
        """No fill in the year (holdings carried through it may still be listed)."""
        return self.trades == 0

    @property
    def total(self) -> Totals:
        result = Totals()
        for report in self.symbols:
            result = result + report.totals
        return result
