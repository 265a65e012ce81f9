"""Benchmark (not a test): complete order lifecycles recorded into the PostgreSQL event store.

Per order: submitted, accepted, 3 partial fills, final fill = 6 order transitions, each saved
in its own transaction as the live engine saves them; each fill is saved together with the
Position it moves (`store.save(order, position)`), so a lifecycle writes 6 order events and
4 position events in 6 transactions.

Reference lines, measured in the same run on the same server and private schema, using the
very rows the event store wrote (same uuids, versions, topics and state bytes):
  * plain psycopg INSERT of one row per order transition, one commit per row (the same
    transaction count as the event store);
  * the same rows with executemany in a single transaction (raw bulk insert);
  * all rows the store wrote (positions too), grouped into the store's transactions
    (isolates what the library adds on top of the bare INSERTs).
The store and the two commit-per-transaction lines alternate in blocks of --block orders, so
drifting commit (fsync) latency hits all of them alike; the ratios are the portable figures.
Then the rebuild: every order and the position loaded back (events/s), and the whole global
log read and decoded with `read_log` in pages of 1000 (events/s).

    .venv/bin/python bench/order_lifecycles.py --orders 2000 --repeat 3 --json out.json

The table goes to stdout, the figures as one JSON object on stdout's last line (and to --json).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from trading_engine.adapters.eventstore.application import EventSourcedStore
from trading_engine.adapters.eventstore.postgres import postgres_event_store
from trading_engine.domain.models import Execution
from trading_engine.domain.order import Order
from trading_engine.domain.position import Position
from trading_engine.domain.values import OrderStatus

EXCHANGE, SYMBOL = "gmo", "BTC_JPY"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SIZE = Decimal("0.01")
FILL_SIZES = (Decimal("0.002"), Decimal("0.003"), Decimal("0.004"), Decimal("0.001"))
FEE = Decimal("0.5")
TRANSITIONS_PER_ORDER = 2 + len(FILL_SIZES)  # submitted, accepted, 3 partial fills, filled
PAGE = 1000
POSITION_TOPIC_PREFIX = Position.__module__ + ":"


# ----- the workload --------------------------------------------------------------------------


def lifecycle(tag: str, n: int, position: Position) -> Iterator[tuple[Order | Position, ...]]:
    """One order's life; yields what a live engine would save after each transition."""
    at = T0 + timedelta(seconds=n)
    side = "BUY" if n % 2 == 0 else "SELL"  # alternate, so the position stays bounded
    price = Decimal(15_000_000 + n % 1000)
    order = Order.submit(
        signal_id=f"{tag}-sig-{n}",
        exchange=EXCHANGE,
        symbol=SYMBOL,
        side=side,
        order_type="LIMIT",
        size=SIZE,
        price=price,
        at=at,
    )
    yield (order,)
    order.accept(f"{tag}-x-{n}", at=at + timedelta(milliseconds=10))
    yield (order,)
    for k, size in enumerate(FILL_SIZES):
        executed = at + timedelta(milliseconds=100 * (k + 1))
        execution = Execution(f"{tag}-e-{n}-{k}", side, price, size, FEE, executed)
        order.fill(execution)
        position.apply_fill(
            order_id=order.id, exchange=EXCHANGE, symbol=SYMBOL, execution=execution
        )
        yield (order, position)


def record(
    store: EventSourcedStore, tag: str, first: int, orders: int, position: Position
) -> tuple[list[uuid.UUID], int, int, float]:
    """N lifecycles, one `store.save` per transition. Returns ids, transitions, events, seconds."""
    ids: list[uuid.UUID] = []
    transitions = events = 0
    started = time.perf_counter()
    for n in range(first, first + orders):
        for aggregates in lifecycle(tag, n, position):
            events += sum(len(a.pending_events) for a in aggregates)
            store.save(*aggregates)
            transitions += 1
        ids.append(aggregates[0].id)
    return ids, transitions, events, time.perf_counter() - started


def domain_only(tag: str, first: int, orders: int) -> tuple[int, float]:
    """The same commands with no I/O (events collected and dropped): the domain's share."""
    position = Position.open_book(EXCHANGE, SYMBOL, at=T0)
    transitions = 0
    started = time.perf_counter()
    for n in range(first, first + orders):
        for aggregates in lifecycle(tag, n, position):
            for aggregate in aggregates:
                aggregate.collect_events()
            transitions += 1
    return transitions, time.perf_counter() - started


# ----- the plain-psycopg reference lines ---------------------------------------------------------

Row = tuple[uuid.UUID, int, str, bytes]


def stored_rows(conn: psycopg.Connection, schema: str, table: str, after: int) -> list[list[Row]]:
    """The rows the store wrote after notification `after`, grouped by transaction.

    A position event always directly follows the order fill it was saved with, so it joins
    the previous group; every other event opens a new one (one group per transition).
    """
    cursor = conn.execute(
        sql.SQL(
            "SELECT originator_id, originator_version, topic, state FROM {}"
            " WHERE notification_id > %s ORDER BY notification_id"
        ).format(sql.Identifier(schema, table)),
        (after,),
    )
    groups: list[list[Row]] = []
    for originator_id, version, topic, state in cursor:
        row = (originator_id, version, topic, bytes(state))
        if topic.startswith(POSITION_TOPIC_PREFIX) and groups:
            groups[-1].append(row)
        else:
            groups.append([row])
    conn.commit()
    return groups


def scratch_table(conn: psycopg.Connection, schema: str, name: str) -> sql.Composable:
    """A new empty table shaped (columns and indexes) like the store's events table."""
    table = sql.Identifier(schema, name)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (originator_id uuid NOT NULL, originator_version bigint NOT NULL,"
            " topic text, state bytea, notification_id bigserial UNIQUE,"
            " PRIMARY KEY (originator_id, originator_version))"
        ).format(table)
    )
    conn.commit()
    return sql.SQL(
        "INSERT INTO {} (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)"
    ).format(table)


def insert_commit_per_row(
    conn: psycopg.Connection, insert: sql.Composable, rows: list[Row]
) -> float:
    started = time.perf_counter()
    with conn.cursor() as cursor:
        for row in rows:
            cursor.execute(insert, row)
            conn.commit()
    return time.perf_counter() - started


def insert_executemany(conn: psycopg.Connection, insert: sql.Composable, rows: list[Row]) -> float:
    started = time.perf_counter()
    with conn.cursor() as cursor:
        cursor.executemany(insert, rows)
        conn.commit()
    return time.perf_counter() - started


def insert_like_store(
    conn: psycopg.Connection, insert: sql.Composable, groups: list[list[Row]]
) -> float:
    started = time.perf_counter()
    with conn.cursor() as cursor:
        for group in groups:
            if len(group) == 1:
                cursor.execute(insert, group[0])
            else:
                cursor.executemany(insert, group)
            conn.commit()
    return time.perf_counter() - started


# ----- reading back --------------------------------------------------------------------------


def rebuild(store: EventSourcedStore, ids: list[uuid.UUID]) -> dict[str, Any]:
    """Every order of the run, then the position, loaded back through the store's API."""
    order_events = 0
    started = time.perf_counter()
    for order_id in ids:
        order = store.get_order(order_id)
        order_events += order.version
        if order.status is not OrderStatus.FILLED or order.version != TRANSITIONS_PER_ORDER:
            raise AssertionError(f"order {order_id} rebuilt as {order.status} v{order.version}")
    orders_done = time.perf_counter()
    position = store.find_position(EXCHANGE, SYMBOL)
    finished = time.perf_counter()
    if position is None:
        raise AssertionError("position not found")
    return {
        "order_events": order_events,
        "orders_s": orders_done - started,
        "position_events": position.version,
        "position_s": finished - orders_done,
        "position": position,
    }


def read_whole_log(store: EventSourcedStore) -> tuple[int, float]:
    decoded, start = 0, 1
    started = time.perf_counter()
    while page := store.read_log(start=start, limit=PAGE):
        decoded += len(page)
        start = page[-1].position + 1
        if len(page) < PAGE:
            break
    return decoded, time.perf_counter() - started


# ----- one measured run ----------------------------------------------------------------------


def per_s(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def one_run(
    store: EventSourcedStore,
    conn: psycopg.Connection,
    schema: str,
    run: int,
    orders: int,
    block: int,
    position: Position,
    profile: cProfile.Profile | None,
) -> dict[str, Any]:
    """One measured run. The store and the commit-bound reference lines alternate in blocks
    of `block` orders, so that drifting commit (fsync) latency hits both alike."""
    tag = f"bench-r{run}"
    first = run * orders
    table = store.recorder.events_table_name  # type: ignore[attr-defined]
    per_row_insert = scratch_table(conn, schema, "scratch_commit_per_row")
    like_store_insert = scratch_table(conn, schema, "scratch_like_store")
    ids: list[uuid.UUID] = []
    order_rows: list[Row] = []
    transitions = events = 0
    record_s = per_row_s = like_store_s = 0.0
    for start in range(first, first + orders, block):
        before = store.max_position()
        if profile is not None:
            profile.enable()
        block_ids, block_transitions, block_events, seconds = record(
            store, tag, start, min(block, first + orders - start), position
        )
        if profile is not None:
            profile.disable()
        ids += block_ids
        transitions += block_transitions
        events += block_events
        record_s += seconds

        groups = stored_rows(conn, schema, table, before)
        block_order_rows = [group[0] for group in groups]
        if len(groups) != block_transitions or sum(map(len, groups)) != block_events:
            raise AssertionError(
                f"store holds {len(groups)} transitions / {sum(map(len, groups))} events of"
                f" this block, expected {block_transitions} / {block_events}"
            )
        per_row_s += insert_commit_per_row(conn, per_row_insert, block_order_rows)
        like_store_s += insert_like_store(conn, like_store_insert, groups)
        order_rows += block_order_rows

    batch_s = insert_executemany(conn, scratch_table(conn, schema, "scratch_batch"), order_rows)
    _, domain_s = domain_only(f"{tag}-dry", first, orders)

    loaded = rebuild(store, ids)
    rebuilt = loaded["position"]
    if rebuilt.fill_count != position.fill_count or rebuilt.quantity != position.quantity:
        raise AssertionError("position rebuilt differently from the live one")
    decoded, read_log_s = read_whole_log(store)
    if decoded != store.max_position():
        raise AssertionError(f"read_log decoded {decoded} of {store.max_position()} events")

    state_bytes = sum(len(row[3]) for row in order_rows)
    return {
        "run": run + 1,
        "orders": orders,
        "transitions": transitions,
        "events": events,
        "mean_order_event_state_bytes": round(state_bytes / len(order_rows)),
        "record_s": record_s,
        "transitions_per_s": per_s(transitions, record_s),
        "events_per_s": per_s(events, record_s),
        "domain_only_transitions_per_s": per_s(transitions, domain_s),
        "baseline_commit_per_row_rows_per_s": per_s(len(order_rows), per_row_s),
        "baseline_executemany_rows_per_s": per_s(len(order_rows), batch_s),
        "raw_same_txns_transitions_per_s": per_s(transitions, like_store_s),
        "ratio_vs_commit_per_row": per_row_s / record_s,
        "ratio_vs_executemany": batch_s / record_s,
        "ratio_vs_raw_same_txns": like_store_s / record_s,
        # All aggregates back (the brief's figure). The position's events are counted at its
        # version, but the store may load it from a snapshot plus a tail: see the next two.
        "rebuild_events": loaded["order_events"] + loaded["position_events"],
        "rebuild_s": loaded["orders_s"] + loaded["position_s"],
        "rebuild_events_per_s": per_s(
            loaded["order_events"] + loaded["position_events"],
            loaded["orders_s"] + loaded["position_s"],
        ),
        "rebuild_order_events_per_s": per_s(loaded["order_events"], loaded["orders_s"]),
        "rebuild_orders_per_s": per_s(len(ids), loaded["orders_s"]),
        "find_position_ms": loaded["position_s"] * 1000,
        "position_version": loaded["position_events"],
        "read_log_events": decoded,
        "read_log_s": read_log_s,
        "read_log_events_per_s": per_s(decoded, read_log_s),
    }


# ----- reporting -----------------------------------------------------------------------------

LINES = [
    ("event store: order transitions", "transitions_per_s", "/s"),
    ("event store: events (orders + position)", "events_per_s", "/s"),
    ("  domain only, no I/O (same commands)", "domain_only_transitions_per_s", "/s"),
    ("baseline: INSERT, commit per row", "baseline_commit_per_row_rows_per_s", "rows/s"),
    ("baseline: executemany, one commit", "baseline_executemany_rows_per_s", "rows/s"),
    ("raw INSERTs of the store's rows, store's txns", "raw_same_txns_transitions_per_s", "/s"),
    ("ratio event store / commit-per-row baseline", "ratio_vs_commit_per_row", "x"),
    ("ratio event store / executemany baseline", "ratio_vs_executemany", "x"),
    ("ratio event store / raw same transactions", "ratio_vs_raw_same_txns", "x"),
    ("rebuild: get_order x N + find_position [1]", "rebuild_events_per_s", "events/s"),
    ("  of which orders only (full replay)", "rebuild_order_events_per_s", "events/s"),
    ("  orders loaded (get_order)", "rebuild_orders_per_s", "orders/s"),
    ("  find_position (snapshot + tail, if any)", "find_position_ms", "ms"),
    ("read_log, whole log, pages of 1000", "read_log_events_per_s", "events/s"),
]


def summarize(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for _, key, _ in LINES}


def show(runs: list[dict[str, Any]], summary: dict[str, float], meta: dict[str, Any]) -> None:
    first = runs[0]
    table = Table(
        title=(
            f"{first['orders']} order lifecycles: {first['transitions']} transitions, "
            f"{first['events']} events per run ({meta['server']}, "
            f"synchronous_commit={meta['synchronous_commit']})"
        )
    )
    table.add_column("measure")
    table.add_column("unit")
    for run in runs:
        table.add_column(f"run {run['run']}", justify="right")
    if len(runs) > 1:
        table.add_column("median", justify="right")

    def cell(value: float, unit: str) -> str:
        if unit == "x":
            return f"{value:.3f}"
        return f"{value:,.1f}" if unit == "ms" else f"{value:,.0f}"

    for label, key, unit in LINES:
        values = [cell(run[key], unit) for run in runs]
        if len(runs) > 1:
            values.append(cell(summary[key], unit))
        table.add_row(label, unit, *values)
    table.caption = (
        "[1] position counted at its version; it may load from a snapshot + tail (see below)"
    )
    Console(width=max(120, 60 + 14 * len(runs))).print(table)


def store_settings(store: EventSourcedStore) -> dict[str, Any]:
    """The settings that move these figures (src/ changes them): recorded with the figures."""
    return {
        **{
            name: store.env.get(name)
            for name in ("POSTGRES_ENABLE_DB_FUNCTIONS", "POSTGRES_PRE_PING", "POSTGRES_POOL_SIZE")
        },
        "snapshotting_intervals": {
            cls.__name__: interval for cls, interval in (store.snapshotting_intervals or {}).items()
        },
    }


def server_facts(url: str) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    parts = urlsplit(url)
    return {
        "database": f"{parts.hostname}:{parts.port or 5432}{parts.path}",  # no credentials
        "server": f"PostgreSQL {version[0].split()[0] if version else '?'}",
        "synchronous_commit": sync[0] if sync else "?",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=2000, help="lifecycles per run (2000)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://root@127.0.0.1:5432/test"),
        help="PostgreSQL URL (env BENCH_DATABASE_URL)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="measured runs (1); median shown")
    parser.add_argument(
        "--block",
        type=int,
        default=100,
        help="orders per block: the store and the commit-per-row baselines alternate (100)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this file")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the recording of the first run; top functions to stderr",
    )
    args = parser.parse_args(argv)
    if min(args.orders, args.repeat, args.block) < 1:
        parser.error("--orders, --repeat and --block must be at least 1")

    meta = server_facts(args.database_url)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    profile = cProfile.Profile() if args.profile else None
    runs: list[dict[str, Any]] = []
    store: EventSourcedStore | None = None
    try:
        store = postgres_event_store(args.database_url, schema=schema)
        meta["store"] = store_settings(store)
        position = Position.open_book(EXCHANGE, SYMBOL, at=T0)  # kept in memory across runs
        with psycopg.connect(args.database_url) as conn:
            for run in range(args.repeat):
                runs.append(
                    one_run(
                        store,
                        conn,
                        schema,
                        run,
                        args.orders,
                        args.block,
                        position,
                        profile if run == 0 else None,
                    )
                )
    finally:
        if store is not None:
            store.close()
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    if profile is not None:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue(), file=sys.stderr)

    summary = summarize(runs)
    show(runs, summary, meta)
    figures = {
        "benchmark": "order_lifecycles",
        **meta,
        "orders": args.orders,
        "repeat": args.repeat,
        "block": args.block,
        "median": {key: round(value, 3) for key, value in summary.items()},
        "runs": [
            {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in runs
        ],
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out_file:
            json.dump(figures, out_file, indent=2)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
