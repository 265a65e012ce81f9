"""A rebuild's bulk path (the log read in large pages, each row written once, with COPY on
PostgreSQL) gives exactly the tables the batch-by-batch path gives, on SQLite and PostgreSQL:
whatever the chunk size (orders that span chunks are updated, fills look up orders written
by an earlier chunk), with times in other zones, with references to signals resolved. A row
the tables refuse hands over to the batch-by-batch path, which stops at the same event.
The log is decoded exactly as the store's mapper decodes it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from support.projection_rig import Rig, a_signal, trade
from trading_engine.adapters.clocks.manual import ManualClock
from trading_engine.adapters.projections.log_stream import FastDecoder
from trading_engine.app.execution.orders import OrderService
from trading_engine.app.projections.runner import ProjectionFailed, ProjectionRunner, rebuild
from trading_engine.app.projections.tables import OrdersProjection, PositionsProjection, Projection
from trading_engine.domain.models import Execution
from trading_engine.domain.values import Side

TABLES = ("orders", "executions", "positions")
TOKYO = timezone(timedelta(hours=9))
MAKERS: list[Callable[[Any], Projection]] = [OrdersProjection, PositionsProjection]


@pytest.fixture
def rig(projection_rig: Rig) -> Rig:
    """On SQLite, then on PostgreSQL (tests/conftest.py)."""
    return projection_rig


def tables(rig: Rig) -> dict[str, list[dict[str, Any]]]:
    return {table: rig.store.rows(table) for table in TABLES}


def batch_by_batch_rebuild(rig: Rig, make: Callable[[Any], Projection]) -> int:
    """The rebuild as it was before the bulk path: every batch upserted, 50 events a batch."""
    projection = make(rig.log)
    rig.store.start_staging(projection.name, projection.tables)
    runner = ProjectionRunner(projection, rig.log, rig.store, batch_size=50, staging=True)
    runner.catch_up()
    return rig.store.swap(projection.name, projection.tables, runner.changes_after)


def tokyo_orders(log: Any, orders: int) -> None:
    """Orders whose every time is written in +09:00 (the tables hold UTC)."""
    clock = ManualClock(datetime(2026, 3, 2, 9, 30, 0, 123456, tzinfo=TOKYO))
    service = OrderService(log, clock)
    for n in range(orders):
        clock.advance(timedelta(seconds=7))
        order = service.submit_for_signal(
            a_signal(f"tokyo-{n}", "BTC_JPY"),
            side=Side.BUY,
            order_type="LIMIT",
            size=Decimal("0.02"),
            price=Decimal("5000000.12345678"),
        )
        service.accept(order.id, f"tokyo-x{n}")
        for part in range(2):
            clock.advance(timedelta(milliseconds=250))
            service.record_fill(
                order.id,
                Execution(
                    execution_id=f"tokyo-e{n}-{part}",
                    side=Side.BUY,
                    price=Decimal("4999999.99999999"),
                    size=Decimal("0.01"),
                    fee=Decimal("0.33333333"),
                    executed_at=clock.now(),
                ),
            )


def signals_for(rig: Rig, signal_ids: list[str]) -> None:
    """Rows in the signals table for some of the orders' signals (orders.signal_id refers to
    them by `Lookup`)."""
    mark = "?" if rig.kind == "sqlite" else "%s"
    with rig.sql() as conn:
        for n, signal_id in enumerate(signal_ids):
            conn.execute(
                "INSERT INTO signals (exchange, symbol, strategy, action, confidence, price_ref, "
                f"timestamp, signal_id) VALUES ({', '.join([mark] * 8)})",
                (
                    "gmo",
                    "BTC_JPY",
                    "rsi",
                    "enter_long",
                    "1",
                    "5000000",
                    f"2026-03-01 00:00:{n:02}",
                    signal_id,
                ),
            )


def handed_over(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The runner's warnings: the bulk path (or its parts) handed over."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "trading_engine.app.projections.runner" and r.levelno >= logging.WARNING
    ]


def in_parts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "processes" in r.getMessage()]


def a_varied_log(rig: Rig) -> None:
    trade(rig.log, 40, seed=21, run="a")
    tokyo_orders(rig.log, 6)
    trade(rig.log, 30, seed=22, run="b")
    signals_for(rig, [f"a-{n}" for n in range(0, 40, 3)] + ["tokyo-1", "b-7"])


@pytest.mark.parametrize(
    ("chunk_size", "processes"), [(7, 1), (64, 1), (100_000, 1), (16, 2), (100_000, 3)]
)
def test_the_bulk_path_gives_the_batch_by_batch_tables(
    rig: Rig, chunk_size: int, processes: int, caplog: pytest.LogCaptureFixture
) -> None:
    """With `processes` > 1, PostgreSQL loads the log in parts, each in a process of its
    own (SQLite in one: one writer at a time)."""
    a_varied_log(rig)
    for make in MAKERS:
        batch_by_batch_rebuild(rig, make)
    expected = tables(rig)
    assert len(expected["orders"]) == 76
    assert any(row["signal_id"] is not None for row in expected["orders"])
    assert len({row["timestamp"] for row in expected["executions"]}) > 1

    with caplog.at_level(logging.INFO, logger="trading_engine.app.projections.runner"):
        for make in MAKERS:
            head = rebuild(
                lambda m=make: m(rig.log),
                rig.log,
                rig.store,
                chunk_size=chunk_size,
                processes=processes,
            )
            assert head == rig.log.max_position()
    assert not handed_over(caplog)  # the bulk path all the way, in parts if asked
    assert len(in_parts(caplog)) == (2 if processes > 1 and rig.kind == "postgres" else 0)
    assert tables(rig) == expected
    assert rig.store.position("orders") == rig.store.position("positions") == head


@pytest.mark.parametrize("processes", [1, 2])
def test_a_row_the_tables_refuse_stops_the_rebuild_at_its_event(
    rig: Rig, processes: int, caplog: pytest.LogCaptureFixture
) -> None:
    trade(rig.log, 30, seed=8, run="c")
    clock = ManualClock(datetime(2026, 3, 3, tzinfo=UTC))
    service = OrderService(rig.log, clock)
    for n in range(2):  # two orders the exchange gave the same id: orders.order_id is UNIQUE
        order = service.submit_for_signal(
            a_signal(f"dup-{n}", "ETH_JPY"),
            side=Side.SELL,
            order_type="LIMIT",
            size=Decimal("0.01"),
            price=Decimal(400_000),
        )
        service.accept(order.id, "the-same-id")
    culprit = rig.log.max_position()
    trade(rig.log, 10, seed=9, run="d")
    ProjectionRunner(OrdersProjection(rig.log), rig.log, rig.store).catch_up(until=culprit - 1)
    live = tables(rig)

    with pytest.raises(ProjectionFailed) as batch_by_batch:
        batch_by_batch_rebuild(rig, OrdersProjection)
    assert batch_by_batch.value.position == culprit
    assert tables(rig) == live
    with (
        caplog.at_level(logging.WARNING, logger="trading_engine.app.projections.runner"),
        pytest.raises(ProjectionFailed) as bulk,
    ):
        rebuild(
            lambda: OrdersProjection(rig.log),
            rig.log,
            rig.store,
            chunk_size=16,
            processes=processes,
        )
    assert (bulk.value.position, bulk.value.event, bulk.value.reason) == (
        batch_by_batch.value.position,
        batch_by_batch.value.event,
        batch_by_batch.value.reason,
    )
    assert handed_over(caplog)
    assert tables(rig) == live  # the live tables serve on, unchanged


def described(value: Any) -> Any:
    """A value with what `==` cannot see spelled out: a Decimal's exponent, a datetime's
    offset, an object's type."""
    if isinstance(value, Decimal | datetime):
        return (type(value).__name__, repr(value))
    if isinstance(value, dict):
        return {key: described(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [described(item) for item in value]
    return (type(value).__name__, value)


def test_the_log_is_decoded_as_the_mapper_decodes_it(rig: Rig) -> None:
    a_varied_log(rig)
    notifications = rig.log.recorder.select_notifications(start=1, limit=100_000)
    assert len(notifications) == rig.log.max_position()
    rows = [(n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in notifications]
    ours = FastDecoder(rig.log).page(rows)
    theirs = rig.log.read_log(1, 100_000)
    assert [e.position for e in ours] == [e.position for e in theirs]
    for mine, mapped in zip(ours, theirs, strict=True):
        assert type(mine.event) is type(mapped.event)
        assert (mine.aggregate_id, mine.version, mine.topic) == (
            mapped.aggregate_id,
            mapped.version,
            mapped.topic,
        )
        assert described(vars(mine.event)) == described(vars(mapped.event))
