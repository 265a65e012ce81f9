"""Projections over a real event log, on SQLite and PostgreSQL: incremental equals rebuild
row for row and agrees with the log; a schema change is rebuilt while the old tables serve;
an event that cannot be applied stops the projection at that event until fixed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from support.projection_rig import Rig, trade
from trading_engine.app.projections.runner import ProjectionFailed, ProjectionRunner, rebuild
from trading_engine.app.projections.tables import OrdersProjection, PositionsProjection
from trading_engine.domain.order import Order
from trading_engine.ports.event_store import RecordedEvent
from trading_engine.ports.projections import RowChange

TABLES = ("orders", "executions", "positions")


@pytest.fixture
def rig(projection_rig: Rig) -> Rig:
    """On SQLite, then on PostgreSQL (tests/conftest.py)."""
    return projection_rig


def tables(rig: Rig) -> dict[str, list[dict[str, Any]]]:
    return {table: rig.store.rows(table) for table in TABLES}


def catch_up(rig: Rig, batch_size: int = 1000) -> None:
    for projection in (OrdersProjection(rig.log), PositionsProjection(rig.log)):
        ProjectionRunner(projection, rig.log, rig.store, batch_size=batch_size).catch_up()


def rebuild_all(rig: Rig) -> None:
    rebuild(lambda: OrdersProjection(rig.log), rig.log, rig.store)
    rebuild(lambda: PositionsProjection(rig.log), rig.log, rig.store)


def dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def assert_tables_match_the_log(rig: Rig) -> None:
    """Every row against the aggregates the log rebuilds (not against another projection)."""
    orders = rig.store.rows("orders")
    fills = 0
    for row in orders:
        order = rig.log.get_order(UUID(str(row["engine_order_id"])))
        assert row["status"] == order.status.value
        assert dec(row["filled_size"]) == order.filled_size
        assert row["order_id"] == (order.exchange_order_id or str(order.id))
        if order.average_price is not None:
            assert abs(dec(row["average_price"]) - order.average_price) < Decimal("1e-8")
        fills += len(order.execution_ids)
    assert len(rig.store.rows("executions")) == fills
    for row in rig.store.rows("positions"):
        position = rig.log.find_position(row["exchange"], row["symbol"])
        assert dec(row["size"]) == position.size
        assert row["side"] == position.side.value
        assert abs(dec(row["realized_pnl"]) - position.realized_pnl) < Decimal("1e-8")
        assert row["fill_count"] == position.fill_count


def test_incremental_equals_rebuild_row_for_row_and_agrees_with_the_log(rig: Rig) -> None:
    for chunk in range(4):  # the projection follows the log as it grows, in small batches
        trade(rig.log, 25, seed=chunk, run=f"c{chunk}")
        catch_up(rig, batch_size=7)
    incremental = tables(rig)
    assert len(incremental["orders"]) == 100
    assert len(incremental["positions"]) == 2
    assert_tables_match_the_log(rig)
    rebuild_all(rig)
    assert tables(rig) == incremental
    assert rig.store.position("orders") == rig.log.max_position()


class OrdersWithFees(OrdersProjection):
    """Version 2 of the orders projection: a new column, derived from the events."""

    def order_row(self, order: Order, first: int, last: RecordedEvent) -> RowChange:
        row = super().order_row(order, first, last)
        values = {**row.values, "fees": order.fees}
        return RowChange(row.table, row.key, values, row.insert_only, row.update)


def test_a_schema_change_is_rebuilt_while_the_old_tables_serve(rig: Rig) -> None:
    trade(rig.log, 40, seed=3)
    catch_up(rig)
    before = tables(rig)["orders"]
    with rig.sql() as conn:  # the migration of version 2: a new column, empty
        conn.execute("ALTER TABLE orders ADD COLUMN fees DECIMAL(20, 8)")
    served: list[int] = []

    def progress(done: int, head: int) -> None:
        live = rig.store.rows("orders")  # readers during the rebuild: the old rows
        served.append(len(live))
        assert all(row["fees"] is None for row in live)

    rebuild(lambda: OrdersWithFees(rig.log), rig.log, rig.store, batch_size=50, progress=progress)
    assert served
    assert set(served) == {len(before)}
    after = rig.store.rows("orders")
    assert len(after) == len(before)
    for row in after:
        events = rig.log.events_of(UUID(str(row["engine_order_id"])))
        paid = sum((e.fee for e in events if isinstance(e, Order.Filled)), Decimal(0))
        assert dec(row["fees"]) == paid
    # everything else is as it was
    strip = [{k: v for k, v in row.items() if k != "fees"} for row in after]
    assert strip == before


def test_an_event_that_cannot_be_applied_stops_the_projection_there(rig: Rig) -> None:
    trade(rig.log, 30, seed=5)
    with rig.sql() as conn:  # a bad migration: canceled orders no longer fit the table
        if rig.kind == "sqlite":
            for operation in ("INSERT", "UPDATE"):  # SQLite has no ADD CONSTRAINT
                conn.execute(
                    f"CREATE TRIGGER no_cancel_{operation} BEFORE {operation} ON orders "
                    "WHEN NEW.status = 'CANCELED' "
                    "BEGIN SELECT RAISE(ABORT, 'canceled orders refused'); END"
                )
        else:
            conn.execute("ALTER TABLE orders ADD CONSTRAINT no_cancel CHECK (status <> 'CANCELED')")
    log = rig.log.read_log(1, 100_000)
    first_cancel = next(e.position for e in log if isinstance(e.event, Order.Canceled))
    just_before = max(e.position for e in log if e.position < first_cancel)
    runner = ProjectionRunner(OrdersProjection(rig.log), rig.log, rig.store, batch_size=50)
    with pytest.raises(ProjectionFailed) as failed:
        runner.catch_up()
    assert failed.value.position == first_cancel
    assert failed.value.event == "Order.Canceled"
    assert "cancel" in failed.value.reason.lower()
    # everything before it is applied; it is not skipped
    assert rig.store.position("orders") == just_before
    with pytest.raises(ProjectionFailed):  # again: it does not skip on a second try
        runner.catch_up()
    with rig.sql() as conn:  # the fix
        if rig.kind == "sqlite":
            conn.execute("DROP TRIGGER no_cancel_INSERT")
            conn.execute("DROP TRIGGER no_cancel_UPDATE")
        else:
            conn.execute("ALTER TABLE orders DROP CONSTRAINT no_cancel")
    runner.catch_up()
    assert rig.store.position("orders") == rig.log.max_position()
    resumed = rig.store.rows("orders")
    rebuild(lambda: OrdersProjection(rig.log), rig.log, rig.store)
    assert rig.store.rows("orders") == resumed
