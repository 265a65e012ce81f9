"""Benchmark (not a test): complete order lifecycles recorded into PostgreSQL.

Per order: submitted, accepted, 3 partial fills, final fill = 6 order transitions, each saved
in its own transaction as the live engine saves them; each fill is saved together with the
position it moves (so 6 order events + 4 position events per lifecycle).

Baselines measured in the same run, same server, same private schema:
  * plain psycopg INSERT of one row per transition, one transaction per row (same commit
    count as the event store);
  * the same rows with executemany in one transaction (what raw bulk insert costs).
Then the rebuild: every order and the position loaded back (events/s), and the whole log
read and decoded page by page (events/s).

    .venv/bin/python bench/order_lifecycles.py --orders 2000
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from psycopg import sql

from adapters.eventstore.postgres import postgres_event_store
from domain.models import Execution
from domain.order import Order
from domain.position import Position

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FILLS = (Decimal("0.002"), Decimal("0.003"), Decimal("0.004"), Decimal("0.001"))  # sum 0.01


def record_lifecycles(store, run: str, orders: int) -> tuple[list[uuid.UUID], float, int]:
    position = Position.open_book("gmo", "BTC_JPY", at=T0)
    ids: list[uuid.UUID] = []
    transitions = 0
    started = time.perf_counter()
    for n in range(orders):
        at = T0 + timedelta(seconds=n)
        side = "BUY" if n % 2 == 0 else "SELL"
        order = Order.submit(
            signal_id=f"{run}-{n}",
            exchange="gmo",
            symbol="BTC_JPY",
            side=side,
            order_type="LIMIT",
            size=Decimal("0.01"),
            price=Decimal(15_000_000 + n),
            at=at,
        )
        store.save(order)
        order.accept(f"X{n}", at=at)
        store.save(order)
        transitions += 2
        for k, size in enumerate(FILLS):
            execution = Execution(
                f"{run}-{n}-{k}", side, Decimal(15_000_000 + n), size, Decimal("0.5"), at
            )
            order.fill(execution, at=at)
            position.apply_fill(
                order_id=order.id, exchange="gmo", symbol="BTC_JPY", execution=execution, at=at
            )
            store.save(order, position)
            transitions += 1
        ids.append(order.id)
    return ids, time.perf_counter() - started, transitions


def baseline_rows(conn: psycopg.Connection, schema: str, rows: int, per_row_commit: bool) -> float:
    table = sql.Identifier(schema, "scratch_rows")
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (originator_id uuid, originator_version int, topic text, state bytea,"
            " notification_id bigserial PRIMARY KEY, UNIQUE (originator_id, originator_version))"
        ).format(table)
    )
    conn.commit()
    state = b'{"execution_id":"run-1-1","price":{"_type_":"decimal_str","_data_":"15000001"}}' * 2
    statement = sql.SQL(
        "INSERT INTO {} (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)"
    ).format(table)
    values = [(uuid.uuid4(), 1, "domain.order:Order.Filled", state) for _ in range(rows)]
    started = time.perf_counter()
    with conn.cursor() as cursor:
        if per_row_commit:
            for row in values:
                cursor.execute(statement, row)
                conn.commit()
        else:
            cursor.executemany(statement, values)
            conn.commit()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    store = postgres_event_store(args.database_url, schema=schema)
    try:
        run = uuid.uuid4().hex[:8]
        ids, record_s, transitions = record_lifecycles(store, run, args.orders)
        events = store.max_position()

        with psycopg.connect(args.database_url) as conn:
            per_row_s = baseline_rows(conn, schema, transitions, per_row_commit=True)
            batch_s = baseline_rows(conn, schema, transitions, per_row_commit=False)

        started = time.perf_counter()
        loaded_events = 0
        for order_id in ids:
            loaded_events += store.get_order(order_id).version
        position = store.find_position("gmo", "BTC_JPY")
        rebuild_s = time.perf_counter() - started
        assert position is not None

        started = time.perf_counter()
        start, decoded = 1, 0
        while page := store.read_log(start=start, limit=1000):
            decoded += len(page)
            start = page[-1].position + 1
        read_log_s = time.perf_counter() - started
    finally:
        store.close()
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    figures = {
        "orders": args.orders,
        "order_transitions": transitions,
        "events_recorded": events,
        "event_store_transitions_per_s": round(transitions / record_s),
        "event_store_events_per_s": round(events / record_s),
        "baseline_insert_commit_per_row_rows_per_s": round(transitions / per_row_s),
        "baseline_insert_executemany_rows_per_s": round(transitions / batch_s),
        "ratio_vs_commit_per_row": round((transitions / record_s) / (transitions / per_row_s), 3),
        "ratio_vs_executemany": round((transitions / record_s) / (transitions / batch_s), 3),
        "rebuild_aggregates_events_per_s": round(loaded_events / rebuild_s),
        "rebuild_orders": len(ids),
        "position_fill_events": position.fill_count,
        "read_log_decoded_events_per_s": round(decoded / read_log_s),
    }
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
