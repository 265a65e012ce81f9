"""Saving to the event store and loading back gives the same aggregates, to the last digit.

Random command sequences run against a few orders and their positions; refused commands
(`IllegalOrderTransition`) are skipped, and everything is saved after every command. Loading
each aggregate back must give an aggregate equal (`==`, i.e. equal `__dict__`) to the live
one. `==` cannot see a Decimal's exponent (0.010 == 0.01) or a datetime's offset (equal
instants compare equal), so those are checked separately on every attribute and on every
stored event.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trading_engine.adapters.eventstore.application import EventSourcedStore
from trading_engine.adapters.eventstore.memory import memory_event_store
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.domain.errors import IllegalOrderTransition
from trading_engine.domain.models import Execution
from trading_engine.domain.order import Order
from trading_engine.domain.position import Position
from trading_engine.domain.values import CancelType, OrderType, Side

BASE = datetime(2026, 1, 1, tzinfo=UTC)
TOKYO = timezone(timedelta(hours=9))
ZONES = st.sampled_from([UTC, TOKYO])
EXCHANGE = "gmo"
SYMBOLS = ["BTC_JPY", "ETH_JPY"]


def decimals(max_coefficient: int, min_exponent: int, max_exponent: int) -> Any:
    """Positive Decimals written with a random exponent: 10E-3 is Decimal('0.010')."""
    return st.builds(
        lambda coefficient, exponent: Decimal(coefficient).scaleb(exponent),
        st.integers(1, max_coefficient),
        st.integers(min_exponent, max_exponent),
    )


ORDER_SIZES = decimals(10**6, -8, 0)
FILL_SIZES = decimals(10**4, -8, -1)
PRICES = decimals(10**9, -8, 2)
FEES = st.builds(
    lambda coefficient, exponent: Decimal(coefficient).scaleb(exponent),
    st.integers(-(10**6), 10**6),
    st.integers(-8, -2),
)


@dataclass(frozen=True)
class OrderSpec:
    symbol: str
    side: Side
    kind: OrderType
    size: Decimal
    price: Decimal
    zone: timezone


@dataclass(frozen=True)
class Command:
    name: str
    order: int
    args: tuple[Any, ...]
    zone: timezone
    microsecond: int


ORDER_SPECS = st.builds(
    OrderSpec,
    st.sampled_from(SYMBOLS),
    st.sampled_from(Side),
    st.sampled_from([OrderType.MARKET, OrderType.LIMIT]),
    ORDER_SIZES,
    PRICES,
    ZONES,
)


def commands(order_count: int) -> Any:
    fill_args = st.tuples(
        st.integers(0, 5),  # execution id: a small pool, so redeliveries happen
        st.sampled_from(["same", "same", "same", "opposite"]),  # side relative to the order
        FILL_SIZES,
        PRICES,
        FEES,
    )
    by_name = {
        "accept": st.tuples(st.sampled_from(["X1", "X2"])),
        "reject": st.tuples(st.sampled_from(["ERR-201", "ERR-5003"]), st.text(max_size=8)),
        "fill": fill_args,
        "request_cancel": st.tuples(st.text(max_size=8)),
        "cancel": st.tuples(st.sampled_from(CancelType), st.text(max_size=8)),
        "expire": st.tuples(st.sampled_from(["", "end of day"])),
    }
    weighted = ["fill"] * 8 + list(by_name)
    return st.sampled_from(weighted).flatmap(
        lambda name: st.builds(
            Command,
            st.just(name),
            st.integers(0, order_count - 1),
            by_name[name],
            ZONES,
            st.integers(0, 999_999),
        )
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[OrderSpec], list[Command]]:
    specs = draw(st.lists(ORDER_SPECS, min_size=1, max_size=3))
    return specs, draw(st.lists(commands(len(specs)), min_size=3, max_size=25))


# ----- running a scenario --------------------------------------------------------------------


@contextmanager
def memory_backend() -> Iterator[tuple[EventSourcedStore, Callable[[], EventSourcedStore]]]:
    store = memory_event_store()
    yield store, lambda: store


@contextmanager
def sqlite_backend() -> Iterator[tuple[EventSourcedStore, Callable[[], EventSourcedStore]]]:
    # a fresh file per hypothesis example: function-scoped fixtures are shared by examples
    directory = Path(tempfile.mkdtemp(prefix="te-rebuild-"))
    opened: list[EventSourcedStore] = []

    def open_store() -> EventSourcedStore:
        opened.append(sqlite_event_store(directory / "ledger.sqlite"))
        return opened[-1]

    try:
        yield open_store(), open_store  # the reader is a second store on the same file
    finally:
        for store in opened:
            store.close()
        shutil.rmtree(directory, ignore_errors=True)


BACKENDS = {"memory": memory_backend, "sqlite": sqlite_backend}


class Ledger:
    """The live aggregates, and a copy of every event each of them emitted."""

    def __init__(self, store: EventSourcedStore) -> None:
        self.store = store
        self.orders: list[Order] = []
        self.positions: dict[str, Position] = {}
        self.events: dict[UUID, list[Any]] = {}
        self.step = 0

    def at(self, zone: timezone, microsecond: int = 0) -> datetime:
        self.step += 1
        instant = BASE + timedelta(seconds=self.step, microseconds=microsecond)
        return instant.astimezone(zone)

    def save(self, *aggregates: Order | Position) -> None:
        for aggregate in aggregates:
            self.events.setdefault(aggregate.id, []).extend(aggregate.pending_events)
        self.store.save(*aggregates)
        assert all(not aggregate.pending_events for aggregate in aggregates)

    def submit(self, number: int, spec: OrderSpec) -> None:
        order = Order.submit(
            signal_id=f"sig-{number}",
            exchange=EXCHANGE,
            symbol=spec.symbol,
            side=spec.side,
            order_type=spec.kind,
            size=spec.size,
            price=spec.price if spec.kind is OrderType.LIMIT else None,
            at=self.at(spec.zone),
        )
        if spec.symbol not in self.positions:
            self.positions[spec.symbol] = Position.open_book(
                EXCHANGE, spec.symbol, at=self.at(spec.zone)
            )
        self.orders.append(order)
        self.save(order, self.positions[spec.symbol])

    def run(self, command: Command) -> None:
        order = self.orders[command.order]
        position = self.positions[str(order.symbol)]
        at = self.at(command.zone, command.microsecond)
        try:
            if command.name == "fill":
                number, side, size, price, fee = command.args
                execution = Execution(
                    execution_id=f"{command.order}-exec-{number}",
                    side=order.side if side == "same" else order.side.opposite,
                    price=price,
                    size=size,
                    fee=fee,
                    executed_at=at,
                )
                if order.fill(execution):
                    position.apply_fill(
                        order_id=order.id,
                        exchange=order.exchange,
                        symbol=order.symbol,
                        execution=execution,
                    )
            else:
                getattr(order, command.name)(*command.args, at=at)
        except IllegalOrderTransition:
            assert not order.pending_events
        self.save(order, position)


def assert_same_values(loaded: Any, live: Any, where: str) -> None:
    """Equal, and for Decimals the same digits; for datetimes the same instant and offset."""
    assert type(loaded) is type(live), where
    if isinstance(live, Decimal):
        assert str(loaded) == str(live), where
    elif isinstance(live, datetime):
        assert loaded == live, where
        assert loaded.utcoffset() == live.utcoffset(), where
    elif isinstance(live, dict):
        assert loaded.keys() == live.keys(), where
        for key, value in live.items():
            assert_same_values(loaded[key], value, f"{where}.{key}")
    else:
        assert loaded == live, where


def assert_rebuilt(store: EventSourcedStore, ledger: Ledger) -> int:
    checked = 0
    for order in ledger.orders:
        loaded = store.get_order(order.id)
        assert loaded == order
        assert_same_values(vars(loaded), vars(order), f"order {order.signal_id}")
        checked += 1
    for symbol, position in ledger.positions.items():
        loaded_position = store.find_position(EXCHANGE, symbol)
        assert loaded_position == position
        assert_same_values(vars(loaded_position), vars(position), f"position {symbol}")
        checked += 1
    for aggregate_id, live_events in ledger.events.items():
        stored_events = store.events_of(aggregate_id)
        assert len(stored_events) == len(live_events)
        for stored, live in zip(stored_events, live_events, strict=True):
            assert_same_values(vars(stored), vars(live), type(live).__qualname__)
    return checked


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_loading_back_gives_the_live_aggregates(
    backend: str, scenario: tuple[list[OrderSpec], list[Command]]
) -> None:
    specs, command_list = scenario
    with BACKENDS[backend]() as (store, open_reader):
        ledger = Ledger(store)
        for number, spec in enumerate(specs):
            ledger.submit(number, spec)
        for command in command_list:
            ledger.run(command)
        checked = assert_rebuilt(open_reader(), ledger)
        assert checked == len(specs) + len({spec.symbol for spec in specs})


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_trailing_zeros_and_offsets_survive_a_round_trip(backend: str) -> None:
    """A hand-picked case: 0.010 stays '0.010', +09:00 stays +09:00."""
    with BACKENDS[backend]() as (store, open_reader):
        ledger = Ledger(store)
        ledger.submit(
            0,
            OrderSpec(
                "BTC_JPY", Side.BUY, OrderType.LIMIT, Decimal("0.010"), Decimal("1E+2"), TOKYO
            ),
        )
        ledger.run(
            Command(
                "fill",
                0,
                (1, "same", Decimal("0.0050"), Decimal("99.90"), Decimal("-0.00")),
                TOKYO,
                7,
            )
        )
        reader = open_reader()
        assert_rebuilt(reader, ledger)
        order = reader.get_order(ledger.orders[0].id)
        assert str(order.size) == "0.010"
        assert str(order.price) == "1E+2"
        assert str(order.filled_size) == "0.0050"
        assert str(order.fees) == "0.00"  # 0 + -0.00
        assert order.last_fill_at is not None
        assert order.last_fill_at.utcoffset() == timedelta(hours=9)
        assert order.created_on.utcoffset() == timedelta(hours=9)
