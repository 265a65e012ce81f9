"""Benchmark (not a test): signal → order latency, and database round trips per signal.

Three processes, as in production: the stand-in GMO exchange (a real HTTP server on loopback,
its own process, noting when each order request arrives), `trading-engine run` (execution on,
with its PostgreSQL store, the database log, projections and order polling running as they do
in production) and this script, which publishes signals on Redis Streams (`signal:gmo`, with
the strategy's publisher) at a steady rate. For each signal: the time from the publish call
to the arrival of its order request at the stand-in, p50 / p90 / p99 / max.

Baselines, in the same run and interleaved with it in blocks (so all see the same machine):
* `baseline`: the bare cost of the same hop without the engine: the same publisher on another
  stream, one `XREADGROUP` reader in this process that sends the same signed `POST /v1/order`
  through the same GMO adapter at once;
* `baseline + 1 commit`: the same, with one durable INSERT to the same PostgreSQL before the
  request: the floor of any design that records its intent before it sends.

Database round trips: the engine process counts the statements its event stores send
(adapters/eventstore/round_trips.py), on the execution thread between each signal's start and
its order request, and after it; and per order poll (on the polling thread, or on the
execution thread for a loop that polls there). Also printed: the engine's time split where its
read of the stream returned (publish → read: the Redis hop and any wait for a busy loop;
read → the adapter's `place_order`).

  .venv/bin/python bench/signal_latency.py                  # 300 signals each way, ~100 s
  .venv/bin/python bench/signal_latency.py --signals 600 --rate 10 --block 50

Times are `time.monotonic_ns()` in every process (one system-wide clock on Linux). Engine
signals alternate `enter_long` and `exit` on BTC_JPY (MARKET, 0.001), so each yields one order
request. The script works in its own PostgreSQL schema and Redis key prefix and removes both
at the end (`BENCH_DATABASE_URL`, `BENCH_REDIS_URL` or --database / --redis name the servers).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import io
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

PRICE = Decimal(5_000_000)
# Each path orders its own symbol, so the stand-in's arrivals say whose they are: the engine
# BTC_JPY (enter_long → /v1/order, exit → /v1/closeBulkOrder), the baselines BTC and ETH
# (spot, the same signed POST /v1/order, MARKET 0.001).
SYMBOLS = {"engine": "BTC_JPY", "baseline": "BTC", "baseline + 1 commit": "ETH"}
PATHS = ("baseline", "baseline + 1 commit", "engine")
ORDER_PATHS = ("/private/v1/order", "/private/v1/closeBulkOrder")
KEY, SECRET = "bench-key", "bench-secret"


# ----- the children -----------------------------------------------------------------------


def standin_child() -> None:
    """The stand-in GMO server; prints its URL, then `order <symbol> <monotonic_ns>` as each
    order request arrives (its request line and headers read, before its body)."""
    from trading_engine_standins.gmo import GmoStandIn, server

    handle = server._Handler._handle

    def noted(self: Any, method: str) -> None:
        if method != "POST" or self.path not in ORDER_PATHS:
            handle(self, method)
            return
        arrived = time.monotonic_ns()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        connection, self.rfile = self.rfile, io.BytesIO(body)  # the body, read again
        try:
            handle(self, method)
        finally:
            self.rfile = connection
        sys.stdout.write(f"order {orjson.loads(body).get('symbol')} {arrived}\n")
        sys.stdout.flush()

    server._Handler._handle = noted  # type: ignore[method-assign]
    standin = GmoStandIn(api_key=KEY, api_secret=SECRET)
    standin.rate_limit_per_second = None
    standin.set_last_price("BTC_JPY", PRICE)
    print(standin.start(), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    standin.stop()


def engine_child(trace_path: str) -> None:
    """`trading-engine run`, with its event stores' statements counted and the execution
    thread's signals, order requests and polls marked; the trace is written at exit."""
    from trading_engine.app.runtime.service import listen_for_stop_early

    listen_for_stop_early()
    import trading_engine.app.bootstrap.execution as bootstrap  # opens the execution's store
    from trading_engine.adapters.brokers.gmo import GmoBroker
    from trading_engine.adapters.eventstore.round_trips import RoundTrips, count_round_trips
    from trading_engine.adapters.signals.redis_bus import RedisSignalSubscriber
    from trading_engine.app.cli.commands import main
    from trading_engine.app.execution.loop import ExecutionLoop
    from trading_engine.app.execution.service import ExecutionService

    trips = RoundTrips()
    opened = bootstrap.open_event_store

    def open_and_trace(database_url: str) -> Any:
        store = opened(database_url)
        count_round_trips(store, trips)
        return store

    bootstrap.open_event_store = open_and_trace  # type: ignore[assignment]
    read = RedisSignalSubscriber.read

    def read_and_mark(self: Any, *args: Any, **kwargs: Any) -> Any:
        entries = read(self, *args, **kwargs)
        for _ in entries:  # one mark per signal read, when the read returned
            trips.note("got")
        return entries

    RedisSignalSubscriber.read = read_and_mark  # type: ignore[method-assign]
    _marked(ExecutionService, "handle", trips, "signal")
    _marked(GmoBroker, "place_order", trips, "request")
    _marked(ExecutionLoop, "poll", trips, "poll")

    def write() -> None:
        threads = ("execution", "execution-polls")
        rows = [(t.thread, t.kind, t.at_ns) for t in trips.trips if t.thread in threads]
        Path(trace_path).write_bytes(orjson.dumps(rows))

    atexit.register(write)
    sys.argv = ["trading-engine", "run"]
    main()


def _marked(cls: type, name: str, trips: Any, kind: str) -> None:
    method = getattr(cls, name)

    def marked(self: Any, *args: Any, **kwargs: Any) -> Any:
        trips.note(kind)
        return method(self, *args, **kwargs)

    setattr(cls, name, marked)


# ----- the run ------------------------------------------------------------------------------


def a_signal(number: int, run: str, entry: bool) -> Any:
    from trading_engine.domain.models import Signal

    return Signal(
        signal_id=f"latency-{run}-{number}",
        exchange="gmo",
        symbol="BTC_JPY",
        strategy="moving_average_cross",
        action="enter_long" if entry else "exit",
        confidence=Decimal(1),
        price_ref=PRICE,
        timestamp=datetime.now(UTC),
        indicators={"fast_ma": 1.0, "slow_ma": 0.5},
        meta={},
    )


class Arrivals:
    """The stand-in's `order <symbol> <ns>` lines, read as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self.base_url = process.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError(f"the stand-in did not start: {self.base_url!r}")
        self.times: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            if line.startswith("order "):
                _, symbol, at = line.split()
                with self._lock:
                    self.times.setdefault(symbol, []).append(int(at))

    def of(self, symbol: str) -> list[int]:
        with self._lock:
            return list(self.times.get(symbol, []))


class BareHop:
    """A baseline: XREADGROUP on its own stream, then the same order request at once; with
    `commit_to` (a PostgreSQL URL and table), one durable INSERT first: the floor of a design
    that records its intent before the request."""

    def __init__(
        self,
        redis_url: str,
        stream: str,
        base_url: str,
        symbol: str,
        commit_to: tuple[str, str] | None = None,
    ) -> None:
        import psycopg
        import redis

        from trading_engine.adapters.brokers.gmo import GmoBroker

        self._client = redis.Redis.from_url(redis_url)
        self._stream, self._symbol = stream, symbol
        self._client.xgroup_create(stream, "bare", id="$", mkstream=True)
        self._broker = GmoBroker(base_url, KEY, SECRET, requests_per_second=1_000_000)
        self._database = None
        if commit_to is not None:
            url, table = commit_to
            self._database = psycopg.connect(url, autocommit=True)
            self._insert = f"INSERT INTO {table} (entry, at) VALUES (%s, now())"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from trading_engine.domain.values import OrderType, Side
        from trading_engine.ports.broker import OrderRequest

        number = 0
        while not self._stop.is_set():
            answer = self._client.xreadgroup(
                "bare", "bare-1", {self._stream: ">"}, count=10, block=200
            )
            for _stream, entries in answer or []:
                for entry_id, _fields in entries:
                    number += 1
                    if self._database is not None:
                        self._database.execute(self._insert, (entry_id.decode(),))
                    self._broker.place_order(
                        OrderRequest(
                            f"bare-{number}",
                            self._symbol,
                            Side.BUY,
                            OrderType.MARKET,
                            Decimal("0.001"),
                            None,
                        )
                    )
                    self._client.xack(self._stream, "bare", entry_id)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._broker.close()
        self._client.close()
        if self._database is not None:
            self._database.close()


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latencies(publishes: list[tuple[bool, int]], arrivals: list[int]) -> list[float]:
    """Milliseconds from each measured publish to its order request: every signal of a path
    yields one request, and the engine handles them in order, so the k-th arrival is the
    k-th publish's (checked: never before it, and as many of each)."""
    if len(arrivals) != len(publishes):
        raise RuntimeError(f"{len(publishes)} signals published, {len(arrivals)} orders arrived")
    spans = []
    for (measured, published), arrived in zip(publishes, sorted(arrivals), strict=True):
        if arrived < published:
            raise RuntimeError("an order request arrived before its signal was published")
        if measured:
            spans.append((arrived - published) / 1e6)
    return spans


def split(publishes: list[tuple[bool, int]], rows: list[tuple[str, int]]) -> dict[str, Any]:
    """Where the engine's time goes: publish → its read of the stream returned (the Redis hop,
    and any wait while the loop was busy: a poll), and read → the adapter's `place_order`."""
    got = [at for kind, at in rows if kind == "got"]
    sent = [at for kind, at in rows if kind == "request"]
    to_read, to_request = [], []
    for (measured, published), read, request in zip(publishes, got, sent, strict=False):
        if measured:
            to_read.append((read - published) / 1e6)
            to_request.append((request - read) / 1e6)

    def p50_p99(values: list[float]) -> list[float]:
        return [round(percentile(values, 50), 2), round(percentile(values, 99), 2)]

    return {"publish_to_read": p50_p99(to_read), "read_to_request": p50_p99(to_request)}


def round_trips_per_signal(
    execution: list[tuple[str, int]], polls: list[tuple[str, int]], warmup: int
) -> dict[str, Any]:
    """Reads and commits of the execution thread between each signal's start and its order
    request, and from the request to the next signal (the first `warmup` signals left out);
    and those of the polling thread per poll."""

    def spans(rows: list[tuple[str, int]], marks: dict[str, list[tuple[int, int]]]) -> None:
        current: list[tuple[int, int]] | None = None
        reads = commits = 0
        for kind, _at in rows:
            if kind in marks:
                if current is not None:
                    current.append((reads, commits))
                reads = commits = 0
                current = marks[kind]
            elif kind == "read":
                reads += 1
            elif kind == "commit":
                commits += 1
        if current is not None:
            current.append((reads, commits))

    before: list[tuple[int, int]] = []
    after: list[tuple[int, int]] = []
    per_poll: list[tuple[int, int]] = []
    spans(execution, {"signal": before, "request": after, "poll": per_poll})
    spans(polls, {"poll": per_poll})

    def summary(counted: list[tuple[int, int]]) -> dict[str, Any]:
        if not counted:
            return {"count": 0}
        return {
            "count": len(counted),
            "reads_mean": round(sum(r for r, _ in counted) / len(counted), 3),
            "reads_max": max(r for r, _ in counted),
            "commits_mean": round(sum(c for _, c in counted) / len(counted), 3),
            "commits_max": max(c for _, c in counted),
        }

    return {
        "before_request": summary(before[warmup:]),
        "after_request": summary(after[warmup:]),
        "per_poll": summary(per_poll),
    }


@contextlib.contextmanager
def child(args: list[str], env: dict[str, str], cwd: str, out: Any) -> Iterator[Any]:
    process = subprocess.Popen(
        [sys.executable, __file__, *args],
        env=env,
        cwd=cwd,
        stdout=out,
        stderr=subprocess.STDOUT if out is not subprocess.PIPE else None,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=300, help="measured, each way")
    parser.add_argument("--warmup", type=int, default=10, help="each way, not measured")
    parser.add_argument("--rate", type=float, default=10.0, help="signals per second")
    parser.add_argument("--block", type=int, default=50, help="signals per block")
    parser.add_argument(
        "--database",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://root@127.0.0.1:5432/test"),
    )
    parser.add_argument(
        "--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--child", choices=("standin", "engine"), help=argparse.SUPPRESS)
    parser.add_argument("--trace", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "standin":
        standin_child()
        return
    if args.child == "engine":
        engine_child(args.trace)
        return

    import psycopg
    import redis
    from psycopg import sql

    from trading_engine.adapters.signals.redis_bus import RedisSignalPublisher

    run = uuid.uuid4().hex[:8]
    prefix, schema = f"bench{run}:", f"bench_{run}"
    load_before = os.getloadavg()
    client = redis.Redis.from_url(args.redis)
    work = tempfile.mkdtemp(prefix="signal_latency_")
    trace = str(Path(work) / "trace.json")
    engine_out = open(Path(work) / "engine.log", "w")  # noqa: SIM115 - closed below
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    try:
        with child(["--child", "standin"], env, work, subprocess.PIPE) as standin:
            arrivals = Arrivals(standin)
            engine_env = {
                **env,
                "DATABASE_URL": f"{args.database}?schema={schema}",
                "REDIS_URL": args.redis,
                "STREAM_PREFIX": prefix,
                "ENABLE_STRATEGY": "false",
                "ENABLE_EXECUTION": "true",
                "ENABLE_PROJECTIONS": "true",
                "LOG_TO_DATABASE": "true",
                "EXCHANGE_NAME": "gmo",
                "SYMBOLS": "BTC_JPY",
                "REST_BASE_URL": arrivals.base_url,
                "API_KEY": KEY,
                "API_SECRET": SECRET,
                "ORDER_TYPE": "MARKET",
                "ORDER_SIZE": "0.001",
                "CONSUMER_NAME": "bench",
            }
            with child(["--child", "engine", "--trace", trace], engine_env, work, engine_out):
                wait_for(
                    lambda: "execution loop started" in Path(engine_out.name).read_text(),
                    120,
                    f"the engine to start (see {engine_out.name})",
                )
                with psycopg.connect(args.database, autocommit=True) as conn:
                    conn.execute(
                        sql.SQL(
                            "CREATE TABLE {}.bench_intents (entry text PRIMARY KEY, at timestamptz)"
                        ).format(sql.Identifier(schema))
                    )
                publishers = {
                    "engine": RedisSignalPublisher(client, stream_prefix=f"{prefix}signal:"),
                    "baseline": RedisSignalPublisher(client, stream_prefix=f"{prefix}bare:"),
                    "baseline + 1 commit": RedisSignalPublisher(
                        client, stream_prefix=f"{prefix}commit:"
                    ),
                }
                hops = [
                    BareHop(
                        args.redis, f"{prefix}bare:gmo", arrivals.base_url, SYMBOLS["baseline"]
                    ),
                    BareHop(
                        args.redis,
                        f"{prefix}commit:gmo",
                        arrivals.base_url,
                        SYMBOLS["baseline + 1 commit"],
                        commit_to=(args.database, f"{schema}.bench_intents"),
                    ),
                ]
                publishes: dict[str, list[tuple[bool, int]]] = {path: [] for path in PATHS}
                total = args.warmup + args.signals
                interval = 1 / args.rate
                next_at = time.monotonic()
                number = 0
                try:
                    while min(len(p) for p in publishes.values()) < total:
                        for path in PATHS:  # in blocks, in turn: all see the same machine
                            done = publishes[path]
                            block = args.warmup if not done else args.block
                            for _ in range(min(block, total - len(done))):
                                item = a_signal(number, run, len(done) % 2 == 0)
                                number += 1
                                time.sleep(max(0.0, next_at - time.monotonic()))
                                done.append((len(done) >= args.warmup, time.monotonic_ns()))
                                publishers[path].publish(item)
                                next_at += interval
                    wait_for(
                        lambda: all(len(arrivals.of(SYMBOLS[p])) >= total for p in PATHS),
                        30,
                        "the last order requests",
                    )
                finally:
                    for hop in hops:
                        hop.close()
            # the engine has stopped (SIGTERM, clean exit): its trace is written
        rows = [tuple(r) for r in orjson.loads(Path(trace).read_bytes())]
        measured = {path: latencies(publishes[path], arrivals.of(SYMBOLS[path])) for path in PATHS}
        load_after = os.getloadavg()
    finally:
        engine_out.close()
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
        with psycopg.connect(args.database, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    figures: dict[str, Any] = {"rate_per_s": args.rate, "signals_each_way": args.signals}
    print(f"signal published → order request at the stand-in, {args.rate:g} signals/s, ms:")
    print(f"{'path':<20} {'n':>5} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for path in PATHS:
        values = measured[path]
        row = {
            "n": len(values),
            **{f"p{p}": round(percentile(values, p), 3) for p in (50, 90, 99)},
            "max": round(max(values), 3),
        }
        figures[path] = row
        print(
            f"{path:<20} {row['n']:>5} {row['p50']:>8.2f} {row['p90']:>8.2f} "
            f"{row['p99']:>8.2f} {row['max']:>8.2f}"
        )
    execution = [(kind, at) for thread, kind, at in rows if thread == "execution"]
    polls = [(kind, at) for thread, kind, at in rows if thread == "execution-polls"]
    figures["engine_split"] = split(publishes["engine"], execution)
    print(
        "engine, split where its read of the stream returned (p50 / p99, ms): "
        f"publish → read {figures['engine_split']['publish_to_read']}, "
        f"read → order request sent {figures['engine_split']['read_to_request']}"
    )
    trips = round_trips_per_signal(execution, polls, args.warmup)
    figures["database_round_trips"] = trips
    print("database round trips of the engine's event store (reads, commits):")
    for span, what in trips.items():
        print(f"  {span:<15} {what}")
    figures["load_average"] = {"before": load_before, "after": load_after}
    print(f"load average before {load_before}, after {load_after}")
    if args.json:
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    main()
