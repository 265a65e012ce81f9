"""The read models: how order and position events become rows of the seed's tables.

Each projection keeps the aggregates it has seen (as of the last event applied) and, for each
event, applies the event to that state exactly as the domain does and writes the resulting
row whole. Rows are therefore never computed by SQL arithmetic that could drift from the
domain; re-applying a row is harmless; and the first event an unseen aggregate meets (after a
restart) loads its state as of the event before from the store.

A row's id is the log position of the event that created it, so the same log always gives the
same rows, ids included, however often and in whatever batches it is replayed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from trading_engine.domain.order import Order
from trading_engine.domain.position import Position
from trading_engine.domain.values import ZERO
from trading_engine.ports.event_store import EventStore, RecordedEvent
from trading_engine.ports.projections import Lookup, RowChange

CACHED_AGGREGATES = 20_000  # per projection; an evicted one is reloaded when next needed

ORDER_EVENTS = (
    Order.Submitted,
    Order.Accepted,
    Order.Rejected,
    Order.Filled,
    Order.CancelRequested,
    Order.Canceled,
)
POSITION_EVENTS = (Position.Created, Position.FillApplied)


class Projection(Protocol):
    """Optionally, `by_aggregate = True`: each row it writes is written from the events of
    one aggregate only, and a lookup into its own tables only finds rows of that aggregate.
    A rebuild may then load the log in parts, each part's aggregates in a process of its
    own (`ProjectionRunner.load`)."""

    name: str  # its position in the log is kept under this name
    tables: tuple[str, ...]  # the tables it owns, in the order rows must be written

    def changes(self, page: Sequence[RecordedEvent]) -> list[RowChange]:
        """The rows a page of the log changes (each touched row once, as it ends up).
        Raises `EventNotApplicable` naming the event it could not apply."""
        ...

    def forget(self) -> None:
        """Drop what it remembers (its position moved under it)."""
        ...


class EventNotApplicable(Exception):
    def __init__(self, recorded: RecordedEvent, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.recorded = recorded


class AggregateCache:
    """The state of each aggregate as of the last event this projection applied to it.
    Kept by the id's integer: a UUID hashes and compares in Python code, an int does not
    (a few of each per event, a tenth of a rebuild's applying)."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._states: OrderedDict[int, Any] = OrderedDict()

    def apply(self, recorded: RecordedEvent) -> Any:
        key = recorded.aggregate_id.int
        try:
            before = self._states.pop(key, None)
            if before is not None and before.version != recorded.version - 1:
                before = None  # not the state this event follows: load the right one
            if before is None and recorded.version > Order.INITIAL_VERSION:
                before = self._store.state_at(recorded.aggregate_id, recorded.version - 1)
            after = recorded.event.mutate(before)
        except Exception as error:
            self.clear()
            raise EventNotApplicable(recorded, error) from error
        self._states[key] = after
        if len(self._states) > CACHED_AGGREGATES:
            self._states.popitem(last=False)
        return after

    def peek(self, recorded: RecordedEvent) -> Any:
        """The status the aggregate had before `recorded` (None for its first event), if its
        state is at hand; reading does not load it (the next `apply` will)."""
        if recorded.version == Order.INITIAL_VERSION:
            return None
        key = recorded.aggregate_id.int
        state = self._states.get(key)
        if state is None or state.version != recorded.version - 1:
            state = self._store.state_at(recorded.aggregate_id, recorded.version - 1)
            self._states[key] = state
        return getattr(state, "status", None)

    def clear(self) -> None:
        self._states.clear()


class _Touched:
    """The aggregates a page changed, in the order first touched: for each, where its row
    would start (its first event in the page), its last event and its state after it."""

    def __init__(self) -> None:
        self._seen: dict[int, list[Any]] = {}

    def touch(self, recorded: RecordedEvent, state: Any) -> None:
        seen = self._seen.get(recorded.aggregate_id.int)
        if seen is None:
            self._seen[recorded.aggregate_id.int] = [recorded.position, recorded, state]
        else:
            seen[1], seen[2] = recorded, state

    def rows(self, row: Callable[[Any, int, RecordedEvent], RowChange]) -> list[RowChange]:
        return [row(state, first, last) for first, last, state in self._seen.values()]


class _Kinds:
    """`isinstance(event, kinds)`, answered once per event class."""

    def __init__(self, kinds: tuple[type, ...]) -> None:
        self._kinds = kinds
        self._known: dict[type, bool] = {}

    def __call__(self, event: Any) -> bool:
        kind = type(event)
        known = self._known.get(kind)
        if known is None:
            known = self._known[kind] = issubclass(kind, self._kinds)
        return known


class OrdersProjection:
    """`orders` (one row per order, its current state) and `executions` (one row per fill)."""

    name = "orders"
    tables = ("orders", "executions")
    by_aggregate = True  # an order's row and its fills' rows (whose lookup finds its row)

    def __init__(self, store: EventStore) -> None:
        self._orders = AggregateCache(store)
        self._wanted = _Kinds(ORDER_EVENTS)
        self._fill = _Kinds((Order.Filled,))

    def changes(self, page: Sequence[RecordedEvent]) -> list[RowChange]:
        touched = _Touched()
        fills: list[RowChange] = []
        apply, wanted, fill = self._orders.apply, self._wanted, self._fill
        for recorded in page:
            event = recorded.event
            if not wanted(event):
                continue
            order = apply(recorded)
            touched.touch(recorded, order)
            if fill(event):
                fills.append(execution_row(order, event, recorded))
        return touched.rows(self.order_row) + fills

    def order_row(self, order: Order, first: int, last: RecordedEvent) -> RowChange:
        return order_row(order, first, last)

    def forget(self) -> None:
        self._orders.clear()


class PositionsProjection:
    """`positions`: one row per (exchange, symbol), as the position stands."""

    name = "positions"
    tables = ("positions",)
    by_aggregate = True  # one position aggregate per (exchange, symbol)

    def __init__(self, store: EventStore) -> None:
        self._positions = AggregateCache(store)
        self._wanted = _Kinds(POSITION_EVENTS)

    def changes(self, page: Sequence[RecordedEvent]) -> list[RowChange]:
        touched = _Touched()
        for recorded in page:
            if self._wanted(recorded.event):
                touched.touch(recorded, self._positions.apply(recorded))
        return touched.rows(position_row)

    def forget(self) -> None:
        self._positions.clear()


def order_row(order: Order, first: int, recorded: RecordedEvent) -> RowChange:
    return RowChange(
        table="orders",
        key=("engine_order_id",),
        insert_only=frozenset({"id", "created_at"}),
        values={
            "id": first,
            "exchange": str(order.exchange),
            "symbol": str(order.symbol),
            # the seed's column is the exchange's id; until it is known, the id we sent
            "order_id": order.exchange_order_id or str(order.id),
            "signal_id": Lookup("signals", "id", "signal_id", order.signal_id),
            "side": order.side.value,
            "order_type": order.order_type.value,
            "price": order.price,
            "size": order.size,
            "status": order.status.value,
            "filled_size": order.filled_size,
            "average_price": order.average_price,
            "timestamp": order.created_on,
            "created_at": order.created_on,
            "updated_at": recorded.timestamp,
            "engine_order_id": order.id,
            "signal_key": order.signal_id,
            "time_in_force": order.time_in_force.value,
            "settle": order.settle,
            "cancel_type": order.cancel_type.value if order.cancel_type else None,
            "reject_code": order.reject_code,
            "reject_message": order.reject_message,
            "last_position": recorded.position,
        },
    )


def execution_row(order: Order, fill: Order.Filled, recorded: RecordedEvent) -> RowChange:
    return RowChange(
        table="executions",
        key=("execution_id",),
        update=False,  # a fill never changes; the order refuses a duplicate execution id
        values={
            "id": recorded.position,
            "exchange": str(order.exchange),
            "symbol": str(order.symbol),
            "order_id": Lookup("orders", "id", "engine_order_id", order.id),
            "execution_id": fill.execution_id,
            "side": order.side.value,
            "price": fill.price,
            "size": fill.size,
            "fee": fill.fee,
            "timestamp": fill.executed_at,
            "created_at": recorded.timestamp,
            "engine_order_id": order.id,
            "source": fill.source,
        },
    )


def position_row(position: Position, first: int, recorded: RecordedEvent) -> RowChange:
    return RowChange(
        table="positions",
        key=("exchange", "symbol"),
        insert_only=frozenset({"id"}),
        values={
            "id": first,
            "exchange": str(position.exchange),
            "symbol": str(position.symbol),
            "side": position.side.value,
            "size": position.size,
            "average_price": position.average_price or ZERO,
            "unrealized_pnl": ZERO,  # needs a mark price, which the log does not hold
            "realized_pnl": position.realized_pnl,
            "updated_at": recorded.timestamp,
            "fees_paid": position.fees_paid,
            "fill_count": position.fill_count,
            "closed_trips": position.closed_trips,
            "last_position": recorded.position,
        },
    )


def all_projections(store: EventStore) -> list[Projection]:
    return [OrdersProjection(store), PositionsProjection(store)]
