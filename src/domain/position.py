"""The Position aggregate: what we hold of one symbol on one exchange, rebuilt from fills.

Quantities are signed: long > 0, short < 0, flat = 0. The position keeps the exact cost of
what is open (`entry_cost`, price × size summed) and the fees paid to open it (`entry_fees`).
When a fill reduces, closes or flips the position, the closed part releases its share of
both, and the realized PnL is

    (exit value − released cost) × direction − released entry fees − fee of the closing fill

so realized PnL is net of every fee on both legs of the round trip. Fees of a fill that
flips through zero are split between its closing and opening parts by size.

Invariant (checked by the property tests): realized + unrealized(mark) equals the cash the
fills moved (−signed size × price − fee, summed) plus the open quantity valued at the mark.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from trading_engine.domain.errors import FillMismatch
from trading_engine.domain.models import Execution
from trading_engine.domain.values import (
    ZERO,
    Exchange,
    PositionSide,
    Side,
    Symbol,
    aware,
    money_context,
    positive,
)

POSITION_NAMESPACE = UUID("0c7d2a55-8e41-5f3b-a2d6-93e1b4c8f0a7")


def position_id_for(exchange: Exchange | str, symbol: Symbol | str) -> UUID:
    return _position_id(str(exchange), str(symbol))


@lru_cache(maxsize=1024)
def _position_id(exchange: str, symbol: str) -> UUID:
    """(Cached: asked on every fill and every sizing, it checked and hashed each time.)"""
    return uuid5(POSITION_NAMESPACE, f"{Exchange(exchange)}:{Symbol(symbol)}")


class Position(Aggregate):
    """One (exchange, symbol) position. Created flat; every fill is an event on it."""

    class Created(Aggregate.Created):
        exchange: str
        symbol: str

    class FillApplied(Aggregate.Event):
        order_id: str
        execution_id: str
        side: str
        price: Decimal
        size: Decimal
        fee: Decimal
        executed_at: datetime

        def apply(self, position: Position) -> None:
            position._apply_fill(Side(self.side), self.price, self.size, self.fee)
            position.fill_count += 1
            position.last_fill_at = self.executed_at

    # Round trips, for the consecutive-losses limit: realized PnL since the position was last
    # flat, and the result of the last trip that ended flat (or flipped). Class defaults keep
    # snapshots taken before these existed loadable.
    trip_realized = ZERO
    closed_trips = 0
    last_trip_pnl: Decimal | None = None

    def __init__(self, exchange: str, symbol: str) -> None:
        self.exchange = Exchange(exchange)
        self.symbol = Symbol(symbol)
        self.quantity = ZERO
        self.entry_cost = ZERO
        self.entry_fees = ZERO
        self.realized_pnl = ZERO
        self.fees_paid = ZERO
        self.fill_count = 0
        self.last_fill_at: datetime | None = None

    @classmethod
    def open_book(cls, exchange: Exchange | str, symbol: Symbol | str, *, at: datetime) -> Position:
        """A flat position for (exchange, symbol), with its deterministic id."""
        exchange_value, symbol_value = Exchange(str(exchange)), Symbol(str(symbol))
        return cls._create(
            cls.Created,
            id=position_id_for(exchange_value, symbol_value),
            timestamp=aware("at", at),
            exchange=exchange_value.value,
            symbol=symbol_value.value,
        )

    # ----- commands -------------------------------------------------------------------------

    def apply_fill(
        self,
        *,
        order_id: UUID | str,
        exchange: Exchange | str,
        symbol: Symbol | str,
        execution: Execution,
        at: datetime | None = None,
    ) -> None:
        """Move the position by one execution of `order_id`."""
        if Exchange(str(exchange)) != self.exchange or Symbol(str(symbol)) != self.symbol:
            raise FillMismatch(
                f"fill for {exchange}:{symbol} applied to position {self.exchange}:{self.symbol}"
            )
        self.trigger_event(
            self.FillApplied,
            timestamp=aware("at", at if at is not None else execution.executed_at),
            order_id=str(order_id),
            execution_id=execution.execution_id,
            side=execution.side.value,
            price=positive("price", execution.price),
            size=positive("size", execution.size),
            fee=execution.fee,
            executed_at=execution.executed_at,
        )

    # ----- arithmetic (called only from events, so replays compute the same numbers) --------

    def _apply_fill(self, side: Side, price: Decimal, size: Decimal, fee: Decimal) -> None:
        with money_context():
            self.fees_paid += fee
            held = abs(self.quantity)
            if self.quantity == ZERO or (self.quantity > ZERO) == (side is Side.BUY):
                self.entry_cost += price * size
                self.entry_fees += fee
                self.quantity += side.sign * size
                return
            direction = 1 if self.quantity > ZERO else -1
            closed = min(size, held)
            closing_fee = fee if size <= held else fee * closed / size
            if closed == held:
                released_cost, released_fees = self.entry_cost, self.entry_fees
            else:
                released_cost = self.entry_cost * closed / held
                released_fees = self.entry_fees * closed / held
            realized = (price * closed - released_cost) * direction - released_fees - closing_fee
            self.realized_pnl += realized
            self.trip_realized += realized
            if closed == held:  # back to flat (or through it): one round trip is over
                self.last_trip_pnl, self.trip_realized = self.trip_realized, ZERO
                self.closed_trips += 1
            self.entry_cost -= released_cost
            self.entry_fees -= released_fees
            self.quantity += side.sign * size
            if size > held:  # flipped through zero: the rest opens the other way
                opened = size - held
                self.entry_cost = price * opened
                self.entry_fees = fee - closing_fee

    # ----- derived state --------------------------------------------------------------------

    @property
    def side(self) -> PositionSide:
        if self.quantity > ZERO:
            return PositionSide.LONG
        if self.quantity < ZERO:
            return PositionSide.SHORT
        return PositionSide.FLAT

    @property
    def size(self) -> Decimal:
        return abs(self.quantity)

    @property
    def average_price(self) -> Decimal | None:
        """Size-weighted mean entry price of what is open (None when flat)."""
        if self.quantity == ZERO:
            return None
        with money_context():
            return self.entry_cost / abs(self.quantity)

    def unrealized_pnl(self, mark: object) -> Decimal:
        """PnL if the open quantity were closed at `mark`, net of the fees already paid on it."""
        mark_price = positive("mark", mark)
        with money_context():
            direction = 1 if self.quantity > ZERO else -1
            return (mark_price * self.size - self.entry_cost) * direction - self.entry_fees
