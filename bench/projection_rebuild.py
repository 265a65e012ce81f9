"""Benchmark (not a test): rebuilding the orders projection from the PostgreSQL event log.

N order events (each order: Submitted, Accepted, Filled, Filled; default 1,000,000 events =
250,000 orders) are written to a fresh schema's event store in bulk, then
`projections rebuild orders` (the code the CLI runs: the bulk path of
`ProjectionRunner.load` — the log read in large pages, each event applied to the order as the
domain does, each chunk's rows written once with binary COPY into staging tables, in one
process per core for a log this long; then the swap) is timed. Baseline, same run: a plain
`COPY` of the very rows the rebuild produced (the `orders` and `executions` tables' rows) into
scratch tables of the same shape — the floor of what writing those rows costs, with no log to
read and no domain to apply. The machine's load average is printed before and after (the
machine is shared: compare the two figures of one run, not figures of different runs).

  .venv/bin/python bench/projection_rebuild.py --events 1000000
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from psycopg import sql

from trading_engine.adapters.eventstore.postgres import postgres_event_store
from trading_engine.adapters.projections.postgres import postgres_projection_store
from trading_engine.adapters.sql.connections import connect_postgres
from trading_engine.adapters.sql.migrations import migrate_postgres
from trading_engine.app.projections.runner import rebuild
from trading_engine.app.projections.tables import OrdersProjection
from trading_engine.domain.models import Execution
from trading_engine.domain.order import Order
from trading_engine.domain.values import Side

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def write_orders(store, orders: int, chunk: int = 2000) -> None:
    for start in range(0, orders, chunk):
        batch = []
        for n in range(start, min(orders, start + chunk)):
            at = T0 + timedelta(seconds=n)
            side = Side.BUY if n % 2 == 0 else Side.SELL
            order = Order.submit(
                signal_id=f"bench-{n}",
                exchange="gmo",
                symbol="BTC_JPY",
                side=side,
                order_type="LIMIT",
                size=Decimal("0.03"),
                price=Decimal(5_000_000 + n % 1000),
                at=at,
            )
            order.accept(str(10_000_000 + n), at=at)
            for part, size in enumerate(("0.01", "0.02")):
                order.fill(
                    Execution(
                        execution_id=f"x{n}-{part}",
                        side=side,
                        price=Decimal(5_000_000 + n % 1000),
                        size=Decimal(size),
                        fee=Decimal("0.5"),
                        executed_at=at,
                    ),
                    at=at,
                )
            batch.append(order)
        store.save(*batch)


def copy_baseline(url: str, schema: str) -> tuple[float, int]:
    """Seconds to COPY the rebuilt rows into scratch tables, and how many rows."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        rows = {t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in ("orders", "executions")}
        for table in rows:
            conn.execute(f"CREATE TABLE scratch_{table} (LIKE {table} INCLUDING ALL)")
        started = time.perf_counter()
        with conn.transaction():
            for table, data in rows.items():
                with conn.cursor().copy(f"COPY scratch_{table} FROM STDIN") as copy:
                    for row in data:
                        copy.write_row(row)
        return time.perf_counter() - started, sum(len(d) for d in rows.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--batch", type=int, default=5000, help="events per transaction of the exact path"
    )
    parser.add_argument(
        "--processes", type=int, default=None, help="default: one per core (up to 4)"
    )
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    orders = args.events // 4
    schema = f"bench_rebuild_{uuid.uuid4().hex[:8]}"
    store = postgres_event_store(args.database, schema=schema)
    with connect_postgres(args.database, schema=schema) as conn:
        migrate_postgres(conn)
    tables = postgres_projection_store(args.database, schema)
    try:
        started = time.perf_counter()
        write_orders(store, orders)
        events = store.max_position()
        print(
            f"log: {events:,} order events ({orders:,} orders) written in "
            f"{time.perf_counter() - started:.1f} s"
        )

        print("load average before the rebuild: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        cpu = os.times()
        started = time.perf_counter()
        reached = rebuild(
            lambda: OrdersProjection(store),
            store,
            tables,
            batch_size=args.batch,
            processes=args.processes,
        )
        rebuild_s = time.perf_counter() - started
        after = os.times()
        own_cpu = after.user + after.system - cpu.user - cpu.system
        helpers_cpu = (
            after.children_user + after.children_system - cpu.children_user - cpu.children_system
        )
        assert reached == events, (reached, events)
        counts = {t.name: t.rows for t in tables.tables(["orders", "executions"])}
        assert counts == {"orders": orders, "executions": 2 * orders}, counts

        copy_s, rows = copy_baseline(args.database, schema)
        print("load average after the COPY: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    finally:
        tables.close()
        store.close()
        with psycopg.connect(args.database, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    rebuild_rate = events / rebuild_s
    copy_rate = events / copy_s  # the same rows, expressed per event they stand for
    print(
        f"rebuild orders projection: {rebuild_s:.1f} s, {rebuild_rate:,.0f} events/s "
        f"({rows:,} rows); CPU {own_cpu:.1f} s here + {helpers_cpu:.1f} s in helper processes "
        "(the server's not counted)"
    )
    print(
        f"baseline COPY of the same {rows:,} rows: {copy_s:.1f} s, {rows / copy_s:,.0f} rows/s "
        f"= {copy_rate:,.0f} events/s"
    )
    print(f"ratio rebuild / COPY: {rebuild_rate / copy_rate:.2f}")


if __name__ == "__main__":
    main()
