"""Benchmark (not a test): the Execution module, signal stream to order at the stand-in GMO.

A. throughput: N signals already on `signal:gmo` (Redis); the execution loop reads them in
   the `trading-engine-execution` group, decides (risk, sizing), records decision + order in
   PostgreSQL, places the order on the stand-in GMO server over HTTP, records its id and
   acknowledges the entry. Signals per second, next to the baseline: the same number of
   bare signed `POST /v1/order` calls through the same adapter (no Redis, no store).
B. latency: signals published one at a time at a steady rate while the loop runs; for each,
   the time from the publish call to the adapter's `place_order` call (p50, p99).

Signals alternate `enter_long` and `exit` on BTC_JPY with MARKET orders, so each yields exactly
one order (an entry, then its close leg: a decision counts the unfilled size of live orders as
position). The monitor's polling is set to once a minute, so A and B measure the signal → order
path, not order following.
C. following: N filled MARKET orders, and one monitor poll that records every fill, through an
   adapter held to GMO's real limit (20 GET/s); next to the baseline of asking order by order
   (status + executions of each, 2N GETs) through the same limited adapter.

  .venv/bin/python bench/execution_throughput.py --signals 2000
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import redis
from psycopg import sql

from trading_engine.adapters.brokers.gmo import GmoBroker
from trading_engine.adapters.eventstore.postgres import postgres_event_store
from trading_engine.adapters.marketdata.in_process import InProcessLog
from trading_engine.adapters.signals.in_process_bus import (
    InProcessSignalPublisher,
    InProcessSignalSubscriber,
)
from trading_engine.adapters.signals.redis_bus import RedisSignalPublisher, RedisSignalSubscriber
from trading_engine.app.bootstrap.execution import execution_loop
from trading_engine.app.runtime.config import load_settings
from trading_engine.domain.models import Signal
from trading_engine.domain.order import order_id_for
from trading_engine.domain.values import OrderType, Side
from trading_engine.ports.broker import OrderRequest
from trading_engine_standins.gmo import GmoStandIn

PRICE = Decimal(4_000_000)


def a_signal(number: int, run: str) -> Signal:
    return Signal(
        signal_id=f"bench-{run}-{number}",
        exchange="gmo",
        symbol="BTC_JPY",
        strategy="moving_average_cross",
        action="enter_long" if number % 2 == 0 else "exit",
        confidence=Decimal(1),
        price_ref=PRICE,
        timestamp=datetime.now(UTC),
        indicators={"fast_ma": 1.0, "slow_ma": 0.5},
        meta={},
    )


class TimedBroker:
    """The real adapter, noting when each placement starts (for the latency figures)."""

    def __init__(self, broker: GmoBroker) -> None:
        self._broker = broker
        self.name = broker.name
        self.placed_at: dict[str, float] = {}

    def place_order(self, request: OrderRequest) -> str:
        self.placed_at[request.client_order_id] = time.perf_counter()
        return self._broker.place_order(request)

    def __getattr__(self, name: str):
        return getattr(self._broker, name)


def bare_placements(broker: GmoBroker, count: int) -> float:
    started = time.perf_counter()
    for number in range(count):
        broker.place_order(
            OrderRequest(
                f"bare-{number}", "BTC_JPY", Side.BUY, OrderType.LIMIT, Decimal("0.001"), PRICE
            )
        )
    return count / (time.perf_counter() - started)


def following(
    standin: GmoStandIn, database: str, schema: str, count: int
) -> tuple[float, float, int]:
    """Seconds for one poll of `count` filled orders, seconds for the per-order reads of the
    same orders, and the GETs the poll made."""
    limited = GmoBroker(standin.base_url, "k", "s")  # 20 GET/s and 20 POST/s, as GMO tier 1
    store = postgres_event_store(database, schema=f"{schema}_follow")
    log = InProcessLog()
    for number in range(count):
        InProcessSignalPublisher(log).publish(a_signal(number, f"follow-{schema}"))
    settings = load_settings(
        ORDER_TYPE="MARKET", ORDER_SIZE=Decimal("0.001"), ORDER_POLL_INTERVAL_SECONDS=60
    )
    loop = execution_loop(
        settings, store, limited, InProcessSignalSubscriber(log, "gmo", consumer="b")
    )
    try:
        loop.start()
        loop.poll()  # the poll the start-up made due; from here on, polls are explicit
        while loop.stats.signals < count:
            loop.step(block_ms=0)
        ids = [
            str(store.get_order(order_id_for(f"bench-follow-{schema}-{n}", 0)).exchange_order_id)
            for n in range(count)
        ]
        time.sleep(1.2)  # an empty GET window for each measurement
        before = _gets(standin)
        started = time.perf_counter()
        loop.poll()
        poll_seconds = time.perf_counter() - started
        gets = _gets(standin) - before
        time.sleep(1.2)
        started = time.perf_counter()
        for exchange_id in ids:
            limited.fetch_order(exchange_id)
            limited.fetch_executions(exchange_id)
        per_order_seconds = time.perf_counter() - started
        return poll_seconds, per_order_seconds, gets
    finally:
        limited.close()
        store.close()


def _gets(standin: GmoStandIn) -> int:
    return sum(1 for method, *_ in standin.requests if method == "GET")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--signals", type=int, default=2000)
    parser.add_argument("--latency-signals", type=int, default=300)
    parser.add_argument(
        "--rate", type=float, default=20.0, help="latency run: signals/s (GMO: 20 orders/s)"
    )
    parser.add_argument("--follow-orders", type=int, default=50)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    prefix, schema = f"bench{run}:", f"bench_{run}"
    standin = GmoStandIn(api_key="k", api_secret="s")
    standin.rate_limit_per_second = None  # GMO's 20/s would make this a rate-limit test
    url = standin.start()
    settings = load_settings(
        DATABASE_URL=args.database,
        REDIS_URL=args.redis,
        STREAM_PREFIX=prefix,
        ORDER_TYPE="MARKET",
        ORDER_SIZE=Decimal("0.001"),
        MAX_POSITION_SIZE=Decimal(1000),
        ORDER_POLL_INTERVAL_SECONDS=60,
    )
    client = redis.Redis.from_url(args.redis)
    store = postgres_event_store(args.database, schema=schema)
    adapter = GmoBroker(url, "k", "s", requests_per_second=1_000_000)
    broker = TimedBroker(adapter)
    publisher = RedisSignalPublisher(client, stream_prefix=f"{prefix}signal:")
    try:
        baseline = bare_placements(adapter, args.signals)

        for number in range(args.signals):
            publisher.publish(a_signal(number, run))
        subscriber = RedisSignalSubscriber(
            client, "gmo", consumer="bench", stream_prefix=f"{prefix}signal:"
        )
        loop = execution_loop(settings, store, broker, subscriber)  # type: ignore[arg-type]
        loop.start()
        started = time.perf_counter()
        while loop.stats.signals < args.signals:
            loop.step(block_ms=100)
        loop_rate = args.signals / (time.perf_counter() - started)
        assert loop.stats.orders == args.signals, loop.stats

        published: dict[str, float] = {}
        stop = threading.Event()

        def produce() -> None:
            for number in range(args.signals, args.signals + args.latency_signals):
                signal = a_signal(number, run)
                published[signal.signal_id] = time.perf_counter()
                publisher.publish(signal)
                time.sleep(1 / args.rate)
            stop.set()

        producer = threading.Thread(target=produce)
        producer.start()
        target = args.signals + args.latency_signals
        while loop.stats.signals < target:
            loop.step(block_ms=5)
        producer.join()
        latencies = sorted(
            (broker.placed_at[str(order_id_for(sid, 0))] - at) * 1000
            for sid, at in published.items()
        )
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]

        poll_s, per_order_s, gets = following(standin, args.database, schema, args.follow_orders)
    finally:
        adapter.close()
        store.close()
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()
        standin.stop()
        with psycopg.connect(args.database, autocommit=True) as conn:
            for name in (schema, f"{schema}_follow"):
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )

    print(f"signals: {args.signals} (throughput), {args.latency_signals} (latency, {args.rate}/s)")
    print(f"baseline: bare signed POST /v1/order via the adapter: {baseline:,.0f} orders/s")
    print(f"execution loop (Redis → risk → PostgreSQL → GMO stand-in → ack): {loop_rate:,.0f}/s")
    print(f"ratio loop / bare placement: {loop_rate / baseline:.2f}")
    print(f"latency publish → place_order: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    n = args.follow_orders
    print(f"following {n} filled orders at 20 GET/s: one poll {poll_s:.2f} s ({gets} GETs)")
    print(f"baseline: status + executions order by order: {per_order_s:.2f} s ({2 * n} GETs)")
    print(f"ratio poll / per-order reads: {poll_s / per_order_s:.2f}")


if __name__ == "__main__":
    main()
