"""The event store as the execution process sees it: the only writer of its account's orders
and positions, it keeps the last state of each in memory instead of reading it back.

Every order and position of the account is written by this process (the execution loop, its
order monitor and reconciliation all save through this object), so what it saved last is
what the store holds: loading it again is a database read that can only return the same
thing. `get_order` and `find_position` answer from memory once an aggregate was saved or
loaded here; the first load of each reads the store. Callers change what they load before
saving it, so each load is a fresh object: an order is replayed from its events kept here
(a few, ~20 µs, against a round trip to the database), a position is copied (it has one
event per fill for ever, and few fields). A save that fails forgets the aggregates it
carried (their state in memory may be ahead of the store): the next load reads them again.

It also keeps the one figure every decision needs, per (exchange, symbol): the position plus
the unfilled size of the live orders (buys +, sells −), updated by the very save that changes
either, so it is consistent whichever thread saved last: the signal path reads it while the
order polls record fills on another thread (app/execution/loop.py). A fill moves size from
the live order to the position and leaves the sum as it was. A save holds `_saving` from
before its commit until memory has it, and the figure is read under it: a decision never
acts on a state the store has already left (a rejection committed, seen by anyone reading
the log, and a signal sent on that would otherwise still meet the order's size as live).

What other processes may write (the trading control: `risk halt` from an operator's shell)
is not kept here; the execution service watches it (app/execution/service.py). Decisions, the log,
the chain: read from the store as before. `forget()` drops everything, for a restart of the
loop after a server was away (what a failed save left behind is then read again).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from copy import deepcopy
from decimal import Decimal
from typing import Any
from uuid import UUID

from trading_engine.domain.order import Order
from trading_engine.domain.position import Position
from trading_engine.domain.values import ZERO
from trading_engine.ports.event_store import ChainReport, EventStore, RecordedEvent

ORDERS_KEPT = 2_000  # the live ones and the recent past; older orders are read when needed


class SoleWriterStore:
    """An `EventStore` that remembers the orders and positions it saved or loaded. (A store
    that is the only writer of everything in it, a backtest's, caches them itself and needs
    no such wrapper: `EventSourcedStore.hand_out_cached_state`.)"""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        # held by a save from before its commit until memory has it (re-entrant: a save made
        # while the same thread reads is not kept waiting by itself)
        self._saving = threading.RLock()
        self._orders: OrderedDict[UUID, list[Any]] = OrderedDict()  # order id -> its events
        self._positions: dict[tuple[str, str], Position | None] = {}
        # live orders: id -> ((exchange, symbol), signed unfilled size), and their sums
        self._live: dict[UUID, tuple[tuple[str, str], Decimal]] = {}
        self._unfilled: dict[tuple[str, str], Decimal] = {}

    # ----- what this process keeps ------------------------------------------------------------

    def quantity_with_live_orders(self, exchange: str, symbol: str) -> Decimal:
        """The signed position plus the unfilled size of its live orders (0 if it never had
        a fill): what a decision must assume, since those fills may already have happened
        at the exchange before a poll records them. From memory once the position is known."""
        key = (exchange, symbol)
        with self._saving, self._lock:
            if key in self._positions:
                position = self._positions[key]
                quantity = ZERO if position is None else position.quantity
                return quantity + self._unfilled.get(key, ZERO)
        self._load_position(exchange, symbol)  # the first time only: a read
        return self.quantity_with_live_orders(exchange, symbol)

    def forget(self) -> None:
        with self._lock:
            self._orders.clear()
            self._positions.clear()
            self._live.clear()
            self._unfilled.clear()

    def _remember(self, aggregate: Any, events: Sequence[Any]) -> None:
        """`aggregate` was saved with `events` (its pending ones, now in the store)."""
        if isinstance(aggregate, Order):
            self._note_live(aggregate)
            known = self._orders.get(aggregate.id)
            if known is None and events and events[0].originator_version != 1:
                return  # an order never loaded here: its earlier events are not kept
            self._keep_order(aggregate.id, [*(known or ()), *events])
        elif isinstance(aggregate, Position):
            self._positions[(aggregate.exchange.value, aggregate.symbol.value)] = aggregate

    def _note_live(self, order: Order) -> None:
        """`order` as it now stands, in the live orders' unfilled sums."""
        before = self._live.pop(order.id, None)
        if before is not None:
            self._unfilled[before[0]] -= before[1]
        if order.status.is_live:
            key = (order.exchange.value, order.symbol.value)
            signed = order.side.sign * order.remaining_size
            self._live[order.id] = (key, signed)
            self._unfilled[key] = self._unfilled.get(key, ZERO) + signed

    def _keep_order(self, order_id: UUID, events: list[Any]) -> None:
        self._orders[order_id] = events
        self._orders.move_to_end(order_id)
        if len(self._orders) > ORDERS_KEPT:
            self._orders.popitem(last=False)

    def _drop(self, aggregate: Any) -> None:
        # (an order's line in the live sums stays as last saved or loaded: the save failed)
        if isinstance(aggregate, Order):
            self._orders.pop(aggregate.id, None)
        elif isinstance(aggregate, Position):
            self._positions.pop((aggregate.exchange.value, aggregate.symbol.value), None)

    def _load_position(self, exchange: str, symbol: str) -> Position | None:
        position = self.store.find_position(exchange, symbol)
        with self._lock:
            self._positions.setdefault((exchange, symbol), position)
            return self._positions[(exchange, symbol)]

    # ----- the EventStore port ----------------------------------------------------------------

    def save(self, *aggregates: Any) -> None:
        pending = [list(getattr(a, "pending_events", ())) for a in aggregates]
        with self._saving:
            try:
                self.store.save(*aggregates)
            except BaseException:
                with self._lock:
                    for aggregate in aggregates:
                        self._drop(aggregate)
                raise
            with self._lock:
                for aggregate, events in zip(aggregates, pending, strict=True):
                    self._remember(aggregate, events)

    def get_order(self, order_id: UUID) -> Order:
        with self._saving, self._lock:
            events = self._orders.get(order_id)
            if events is not None:
                self._orders.move_to_end(order_id)
        if events is not None:
            return _replay(events)
        events = list(self.store.events_of(order_id))
        if not events:
            return self.store.get_order(order_id)  # raises UnknownOrder, as the store does
        order = _replay(events)
        with self._lock:
            if order_id not in self._orders:  # (else saved here meanwhile: that is newer)
                self._keep_order(order_id, events)
                self._note_live(order)
        return order  # (its own object: the book keeps the events and numbers only)

    def find_position(self, exchange: str, symbol: str) -> Position | None:
        with self._saving, self._lock:
            if (exchange, symbol) in self._positions:
                return deepcopy(self._positions[(exchange, symbol)])
        return deepcopy(self._load_position(exchange, symbol))

    def find(self, aggregate_id: UUID) -> Any | None:
        return self.store.find(aggregate_id)

    def state_at(self, aggregate_id: UUID, version: int) -> Any:
        return self.store.state_at(aggregate_id, version)

    def events_of(self, aggregate_id: UUID) -> Sequence[Any]:
        return self.store.events_of(aggregate_id)

    def read_log(self, start: int = 1, limit: int = 1000) -> Sequence[RecordedEvent]:
        return self.store.read_log(start, limit)

    def max_position(self) -> int:
        return self.store.max_position()

    def chain_head(self) -> tuple[int, str] | None:
        return self.store.chain_head()

    def verify_chain(self, progress: Callable[[int, int], None] | None = None) -> ChainReport:
        return self.store.verify_chain(progress)

    def close(self) -> None:
        self.store.close()

    def __getattr__(self, name: str) -> Any:
        # whatever else the wrapped store offers (its recorder, env, ...: the watch reads them)
        return getattr(self.store, name)


def _replay(events: Sequence[Any]) -> Order:
    order: Any = None
    for event in events:
        order = event.mutate(order)
    assert isinstance(order, Order)
    return order
