"""Position arithmetic against an exact reference model written with `Fraction`.

The reference follows the formula at the top of `domain/position.py`: an opening fill adds
price x size to the entry cost and its fee to the entry fees; a reducing fill releases the
closed share (closed / held) of both and realizes

    (price x closed - released cost) x direction - released entry fees - closing fee

where a fill that flips through zero splits its fee by size: closed / size of it closes, the
rest is the entry fee of the new position. The implementation rounds proportional releases at
60 significant digits, so PnL and averages are compared within 1e-30; quantities and fee sums
must be exact.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading_engine.domain.errors import FillMismatch
from trading_engine.domain.models import Execution
from trading_engine.domain.position import Position
from trading_engine.domain.values import PositionSide, Side

BASE = datetime(2026, 1, 1, tzinfo=UTC)
TOLERANCE = Fraction(1, 10**30)
EXCHANGE, SYMBOL = "gmo", "BTC_JPY"
ORDER_ID = "00000000-0000-0000-0000-000000000001"


def eight_places(low: str, high: str) -> st.SearchStrategy[Decimal]:
    return st.decimals(
        min_value=Decimal(low),
        max_value=Decimal(high),
        places=8,
        allow_nan=False,
        allow_infinity=False,
    )


SIZES = st.one_of(
    st.sampled_from([Decimal("0.00000001"), Decimal("0.5"), Decimal("1"), Decimal("3")]),
    eight_places("0.00000001", "10"),
    eight_places("0.00000001", "999999999999.99999999"),  # the whole DECIMAL(20,8) range
)
PRICES = st.one_of(
    eight_places("0.00000001", "20000000"),
    eight_places("0.00000001", "999999999999.99999999"),
)
FEES = st.one_of(
    st.sampled_from([Decimal(0), Decimal("0E-8"), Decimal("-0.00000001")]),
    eight_places("-50", "50"),  # negative = maker rebate
    eight_places("-999999.99999999", "999999.99999999"),
)
# targets of the flipping walk: two of them apart must still be one DECIMAL(20,8) size
TARGETS = st.one_of(
    st.just(Decimal(0)),
    st.sampled_from([Decimal("0.00000001"), Decimal("0.5"), Decimal("1"), Decimal("3")]),
    eight_places("0.00000001", "10"),
    eight_places("0.00000001", "499999999999.99999999"),
)
MARKS = eight_places("0.00000001", "999999999999.99999999")


@dataclass(frozen=True)
class Fill:
    side: Side
    size: Decimal
    price: Decimal
    fee: Decimal


FILLS = st.builds(Fill, st.sampled_from(Side), SIZES, PRICES, FEES)


@st.composite
def flipping_fills(draw: st.DrawFn) -> list[Fill]:
    """Fills that walk the position to targets of alternating sign, often exactly to zero."""
    fills, current = [], Decimal(0)
    for step in range(draw(st.integers(1, 30))):
        magnitude = draw(TARGETS)
        target = magnitude if step % 2 == 0 else -magnitude
        delta = target - current
        if delta == 0:
            continue
        side = Side.BUY if delta > 0 else Side.SELL
        fills.append(Fill(side, abs(delta), draw(PRICES), draw(FEES)))
        current = target
    return fills


class Reference:
    """The position's bookkeeping in exact rational arithmetic."""

    def __init__(self) -> None:
        self.quantity = Fraction(0)
        self.entry_cost = Fraction(0)
        self.entry_fees = Fraction(0)
        self.realized = Fraction(0)
        self.fees_paid = Fraction(0)

    def apply(self, fill: Fill) -> None:
        price, size, fee = Fraction(fill.price), Fraction(fill.size), Fraction(fill.fee)
        signed = size if fill.side is Side.BUY else -size
        self.fees_paid += fee
        if self.quantity == 0 or (self.quantity > 0) == (signed > 0):
            self.entry_cost += price * size
            self.entry_fees += fee
            self.quantity += signed
            return
        held = abs(self.quantity)
        direction = 1 if self.quantity > 0 else -1
        closed = min(size, held)
        closing_fee = fee * closed / size
        released_cost = self.entry_cost * closed / held
        released_fees = self.entry_fees * closed / held
        self.realized += (price * closed - released_cost) * direction - released_fees - closing_fee
        self.entry_cost -= released_cost
        self.entry_fees -= released_fees
        self.quantity += signed
        if size > held:
            self.entry_cost = price * (size - held)
            self.entry_fees = fee - closing_fee

    @property
    def average_price(self) -> Fraction | None:
        return None if self.quantity == 0 else self.entry_cost / abs(self.quantity)

    def unrealized(self, mark: Decimal) -> Fraction:
        direction = 1 if self.quantity > 0 else -1
        return (Fraction(mark) * abs(self.quantity) - self.entry_cost) * direction - self.entry_fees


def close_to(actual: Decimal | None, expected: Fraction | None) -> bool:
    if actual is None or expected is None:
        return actual is None and expected is None
    return abs(Fraction(actual) - expected) <= TOLERANCE


def new_position() -> Position:
    return Position.open_book(EXCHANGE, SYMBOL, at=BASE)


def apply(position: Position, fill: Fill, step: int) -> None:
    position.apply_fill(
        order_id=ORDER_ID,
        exchange=EXCHANGE,
        symbol=SYMBOL,
        execution=Execution(
            execution_id=f"exec-{step}",
            side=fill.side,
            price=fill.price,
            size=fill.size,
            fee=fill.fee,
            executed_at=BASE + timedelta(seconds=step),
        ),
    )


def check_against_reference(fills: list[Fill], mark: Decimal) -> Position:
    position, reference = new_position(), Reference()
    cash = Fraction(0)  # what the fills moved: -signed size x price - fee, summed
    fees = Fraction(0)
    events: list[Any] = list(position.collect_events())
    for step, fill in enumerate(fills, start=1):
        apply(position, fill, step)
        events.extend(position.collect_events())
        reference.apply(fill)
        signed = Fraction(fill.size) * fill.side.sign
        cash += -signed * Fraction(fill.price) - Fraction(fill.fee)
        fees += Fraction(fill.fee)

        assert Fraction(position.quantity) == reference.quantity
        assert Fraction(position.quantity) == sum(
            (Fraction(f.size) * f.side.sign for f in fills[:step]), Fraction(0)
        )
        assert Fraction(position.fees_paid) == fees == reference.fees_paid
        assert position.fill_count == step
        assert position.last_fill_at == BASE + timedelta(seconds=step)
        expected_side = (
            PositionSide.LONG
            if reference.quantity > 0
            else PositionSide.SHORT
            if reference.quantity < 0
            else PositionSide.FLAT
        )
        assert position.side is expected_side
        assert close_to(position.entry_cost, reference.entry_cost)
        assert close_to(position.entry_fees, reference.entry_fees)
        assert close_to(position.average_price, reference.average_price)
        assert close_to(position.realized_pnl, reference.realized)
        unrealized = position.unrealized_pnl(mark)
        assert close_to(unrealized, reference.unrealized(mark))
        if reference.quantity == 0:
            assert unrealized == 0
            assert position.entry_cost == 0
            assert position.entry_fees == 0
        # conservation: realized + unrealized(mark) == cash moved + open quantity at mark
        total = Fraction(position.realized_pnl) + Fraction(unrealized)
        assert abs(total - (cash + reference.quantity * Fraction(mark))) <= TOLERANCE

    rebuilt = events[0].mutate(None)
    for event in events[1:]:
        rebuilt = event.mutate(rebuilt)
    assert rebuilt == position
    return position


@settings(max_examples=300, deadline=None)
@given(fills=st.lists(FILLS, min_size=1, max_size=40), mark=MARKS)
def test_random_fills_match_the_exact_reference(fills: list[Fill], mark: Decimal) -> None:
    check_against_reference(fills, mark)


@settings(max_examples=300, deadline=None)
@given(fills=flipping_fills(), mark=MARKS)
def test_flipping_through_zero_matches_the_exact_reference(
    fills: list[Fill], mark: Decimal
) -> None:
    position = check_against_reference(fills, mark)
    target = sum((f.size * f.side.sign for f in fills), Decimal(0))
    assert position.quantity == target


@settings(max_examples=100, deadline=None)
@given(
    size=SIZES,
    buy_price=PRICES,
    sell_price=PRICES,
    buy_fee=FEES,
    sell_fee=FEES,
)
def test_round_trip_realizes_everything(
    size: Decimal, buy_price: Decimal, sell_price: Decimal, buy_fee: Decimal, sell_fee: Decimal
) -> None:
    """Buy then sell the same size: flat, and realized is exactly the cash moved."""
    position = new_position()
    apply(position, Fill(Side.BUY, size, buy_price, buy_fee), 1)
    apply(position, Fill(Side.SELL, size, sell_price, sell_fee), 2)
    assert position.quantity == 0
    assert position.side is PositionSide.FLAT
    assert position.average_price is None
    expected = (
        (Fraction(sell_price) - Fraction(buy_price)) * Fraction(size)
        - Fraction(buy_fee)
        - Fraction(sell_fee)
    )
    assert Fraction(position.realized_pnl) == expected  # a full close releases exactly


# ----- hand-computed examples ---------------------------------------------------------------


def run(*fills: Fill) -> Position:
    position = new_position()
    for step, fill in enumerate(fills, start=1):
        apply(position, fill, step)
    return position


def buy(size: str, price: str, fee: str) -> Fill:
    return Fill(Side.BUY, Decimal(size), Decimal(price), Decimal(fee))


def sell(size: str, price: str, fee: str) -> Fill:
    return Fill(Side.SELL, Decimal(size), Decimal(price), Decimal(fee))


def test_long_then_partial_close() -> None:
    position = run(buy("2", "100", "0.2"), sell("0.5", "110", "0.055"))
    # released cost = 200 x 0.5 / 2 = 50; released entry fees = 0.2 x 0.5 / 2 = 0.05
    # realized = (110 x 0.5 - 50) x (+1) - 0.05 - 0.055 = 5 - 0.105 = 4.895
    assert position.realized_pnl == Decimal("4.895")
    # open: 1.5 @ 100, entry cost 150, entry fees 0.15
    assert position.quantity == Decimal("1.5")
    assert position.entry_cost == Decimal(150)
    assert position.entry_fees == Decimal("0.15")
    assert position.average_price == Decimal(100)
    # unrealized at 120 = (120 x 1.5 - 150) - 0.15 = 29.85
    assert position.unrealized_pnl(Decimal(120)) == Decimal("29.85")
    # conservation: cash = -200 - 0.2 + 55 - 0.055 = -145.255; + 1.5 x 120 = 34.745
    #               = 4.895 + 29.85
    assert position.fees_paid == Decimal("0.255")


def test_long_closed_fully() -> None:
    position = run(buy("2", "100", "0.2"), sell("0.5", "110", "0.055"), sell("1.5", "90", "0.135"))
    # second close: (90 x 1.5 - 150) - 0.15 - 0.135 = -15 - 0.285 = -15.285
    # realized = 4.895 - 15.285 = -10.39 = cash moved (-145.255 + 135 - 0.135)
    assert position.realized_pnl == Decimal("-10.39")
    assert position.quantity == 0
    assert position.side is PositionSide.FLAT
    assert position.average_price is None
    assert position.entry_cost == 0
    assert position.entry_fees == 0
    assert position.unrealized_pnl(Decimal(1)) == 0
    assert position.fees_paid == Decimal("0.39")


def test_flip_long_to_short_splits_the_fee() -> None:
    position = run(buy("1", "100", "1"), sell("3", "120", "0.3"))
    # the sell closes 1 of its 3: closing fee = 0.3 x 1/3 = 0.1, opening fee = 0.2
    # realized = (120 x 1 - 100) - 1 - 0.1 = 18.9
    assert position.realized_pnl == Decimal("18.9")
    # open short 2 @ 120: entry cost 240, entry fees 0.2
    assert position.quantity == Decimal(-2)
    assert position.side is PositionSide.SHORT
    assert position.entry_cost == Decimal(240)
    assert position.entry_fees == Decimal("0.2")
    assert position.average_price == Decimal(120)
    # unrealized at 110 = (110 x 2 - 240) x (-1) - 0.2 = 19.8
    # conservation: cash = -100 - 1 + 360 - 0.3 = 258.7; + (-2) x 110 = 38.7 = 18.9 + 19.8
    assert position.unrealized_pnl(Decimal(110)) == Decimal("19.8")


def test_flip_short_to_long_with_a_maker_rebate() -> None:
    position = run(buy("1", "100", "1"), sell("3", "120", "0.3"), buy("3", "100", "-0.03"))
    # the buy closes 2 of its 3: closing fee = -0.03 x 2/3 = -0.02, opening fee = -0.01
    # realized += (100 x 2 - 240) x (-1) - 0.2 - (-0.02) = 40 - 0.18 = 39.82
    # realized = 18.9 + 39.82 = 58.72
    assert position.realized_pnl == Decimal("58.72")
    assert position.quantity == Decimal(1)
    assert position.entry_cost == Decimal(100)
    assert position.entry_fees == Decimal("-0.01")
    assert position.fees_paid == Decimal("1.27")


def test_short_then_cover_at_a_loss() -> None:
    position = run(sell("2", "50", "0.1"), buy("2", "55", "0.11"))
    # realized = (55 x 2 - 100) x (-1) - 0.1 - 0.11 = -10 - 0.21 = -10.21
    assert position.realized_pnl == Decimal("-10.21")
    assert position.quantity == 0
    assert position.side is PositionSide.FLAT
    assert position.fees_paid == Decimal("0.21")


def test_short_partial_cover_releases_a_third_of_the_cost() -> None:
    position = run(sell("3", "10", "0.3"), buy("1", "11", "0"))
    # released cost = 30 x 1/3 = 10, released fees = 0.3 x 1/3 = 0.1
    # realized = (11 x 1 - 10) x (-1) - 0.1 - 0 = -1.1
    assert position.realized_pnl == Decimal("-1.1")
    assert position.quantity == Decimal(-2)
    assert position.entry_cost == Decimal(20)
    assert position.entry_fees == Decimal("0.2")


def test_fill_for_another_symbol_is_refused_and_changes_nothing() -> None:
    position = run(buy("1", "100", "0"))
    before = copy.deepcopy(position.__dict__)
    with pytest.raises(FillMismatch):
        position.apply_fill(
            order_id=ORDER_ID,
            exchange=EXCHANGE,
            symbol="ETH_JPY",
            execution=Execution("exec-x", Side.BUY, Decimal(1), Decimal(1), Decimal(0), BASE),
        )
    assert position.__dict__ == before
