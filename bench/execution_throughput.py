"""Benchmark (not a test): the Execution module, signal stream to order at the stand-in GMO.

A. throughput: N signals already on `signal:gmo` (Redis); the execution loop reads them in
   the `trading-engine-execution` group, decides (risk, sizing), records decision + order in
   PostgreSQL, places the order on the stand-in GMO server over HTTP, records its id and
   acknowledges the entry. Signals per second, next to the baseline: the same number of
   bare signed `POST /v1/order` calls through the same adapter (no Redis, no store).
B. latency: signals published one at a time at a steady rate while the loop runs; for each,
   the time from the publish call to the adapter's `place_order` call (p50, p99).

Every signal is an `enter_long` on BTC_JPY with a resting LIMIT order far below the market, so
the position stays flat and each signal yields exactly one order. The monitor's polling is
set to once a minute, so this measures the signal → order path, not order following.

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

from adapters.brokers.gmo import GmoBroker
from adapters.eventstore.postgres import postgres_event_store
from adapters.signals.redis_bus import RedisSignalPublisher, RedisSignalSubscriber
from app.bootstrap import execution_loop
from app.config import load_settings
from domain.models import Signal
from domain.order import order_id_for
from domain.values import OrderType, Side
from gmo_standin import GmoStandIn
from ports.broker import OrderRequest

PRICE = Decimal(4_000_000)


def a_signal(number: int, run: str) -> Signal:
    return Signal(
        signal_id=f"bench-{run}-{number}",
        exchange="gmo",
        symbol="BTC_JPY",
        strategy="moving_average_cross",
        action="enter_long",
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--signals", type=int, default=2000)
    parser.add_argument("--latency-signals", type=int, default=300)
    parser.add_argument(
        "--rate", type=float, default=20.0, help="latency run: signals/s (GMO: 20 orders/s)"
    )
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
        ORDER_TYPE="LIMIT",
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
    finally:
        adapter.close()
        store.close()
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()
        standin.stop()
        with psycopg.connect(args.database, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    print(f"signals: {args.signals} (throughput), {args.latency_signals} (latency, {args.rate}/s)")
    print(f"baseline: bare signed POST /v1/order via the adapter: {baseline:,.0f} orders/s")
    print(f"execution loop (Redis → risk → PostgreSQL → GMO stand-in → ack): {loop_rate:,.0f}/s")
    print(f"ratio loop / bare placement: {loop_rate / baseline:.2f}")
    print(f"latency publish → place_order: p50 {p50:.2f} ms, p99 {p99:.2f} ms")


if __name__ == "__main__":
    main()
