"""Benchmark (not a test): the Strategy module's throughput, with baselines from the same run.

A. domain only: trades → bars (every timeframe) → indicators → strategy, no I/O, no parsing;
B. the embedded default end to end: in-process stream (GMO JSON entries, parsed) → loop →
   SQLite tables; and the same with PostgreSQL tables;
C. Redis: the whole strategy loop (XREADGROUP, parse, bars, strategy, upsert into PostgreSQL,
   XACK) next to a bare XREADGROUP + parse + XACK drain of the same entries, same batch size;
   the ratio loop / drain is the figure to compare across machines.

  .venv/bin/python bench/strategy_throughput.py --trades 50000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import redis
from psycopg import sql

from trading_engine.adapters.marketdata.gmo_messages import parse_entry
from trading_engine.adapters.marketdata.stream_writer import publish_trades
from trading_engine.adapters.marketdata.synthetic import synthetic_trades
from trading_engine.adapters.strategies.registry import create_strategy
from trading_engine.app.bootstrap.strategy import (
    live_strategy_loop,
    simulated_strategy_loop,
    strategy_parameters,
)
from trading_engine.app.runtime.config import load_settings
from trading_engine.domain.bars import MultiTimeframeBars
from trading_engine.domain.values import Exchange, Symbol, Timeframe


def domain_only(trades, timeframes, strategy_tf, settings) -> float:
    book = MultiTimeframeBars(Exchange("gmo"), Symbol("BTC_JPY"), timeframes)
    strategy = create_strategy(settings.STRATEGY_NAME, **strategy_parameters(settings))
    started = time.perf_counter()
    for trade in trades:
        for bar in book.add(trade).bars():
            if bar.timeframe == strategy_tf:
                strategy.decide(bar, strategy.calculate_indicators(bar))
    return len(trades) / (time.perf_counter() - started)


def in_process(trades, settings) -> float:
    loop, _log, close = simulated_strategy_loop(settings, trades)
    started = time.perf_counter()
    try:
        loop.run_to_end()
    finally:
        close()
    return len(trades) / (time.perf_counter() - started)


def bare_drain(client: redis.Redis, stream: str, batch: int, parse: bool) -> float:
    group = "bench-drain"
    client.xgroup_create(stream, group, id="0", mkstream=True)
    count = 0
    started = time.perf_counter()
    while True:
        reply = client.xreadgroup(group, "drain-1", {stream: ">"}, count=batch)
        if not reply:
            break
        ids = []
        for entry_id, fields in reply[0][1]:
            if parse:
                parse_entry(stream, fields)
            ids.append(entry_id)
        client.xack(stream, group, *ids)
        count += len(ids)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trades", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeframes", default="1s,1m,5m")
    parser.add_argument("--strategy", default="moving_average_cross")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    timeframes = args.timeframes.split(",")
    # a past day, replayed: the bars close on the trades (the feed's clock closes nothing
    # while the loop reads a backlog)
    start = datetime(2025, 3, 3, tzinfo=UTC)
    trades = list(synthetic_trades(start=start, seed=args.seed, count=args.trades))
    tmp = Path(tempfile.mkdtemp(prefix="bench-strategy-"))
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    prefix = f"bench{uuid.uuid4().hex[:8]}:"
    common = {
        "OHLCV_TIMEFRAMES": timeframes,
        "STRATEGY_TIMEFRAME": "1m",
        "STRATEGY_NAME": args.strategy,
        "STRATEGY_BATCH_SIZE": args.batch,
        "REDIS_URL": args.redis_url,
        "STREAM_PREFIX": prefix,
    }
    figures: dict[str, float] = {"trades": args.trades, "batch": args.batch}
    client = redis.Redis.from_url(args.redis_url)
    try:
        sqlite_settings = load_settings(DATABASE_URL=f"sqlite:///{tmp}/b.sqlite3", **common)
        pg_settings = load_settings(DATABASE_URL=f"{args.database_url}?schema={schema}", **common)
        figures["A_domain_only_trades_per_s"] = domain_only(
            trades, [Timeframe(t) for t in timeframes], Timeframe("1m"), sqlite_settings
        )
        figures["B_in_process_sqlite_trades_per_s"] = in_process(trades, sqlite_settings)
        pg_inproc = load_settings(DATABASE_URL=f"{args.database_url}?schema={schema}_ip", **common)
        figures["B_in_process_postgres_trades_per_s"] = in_process(trades, pg_inproc)

        started = time.perf_counter()
        publish_trades(client, trades, stream=f"{prefix}md:trade")
        figures["C_publish_entries_per_s"] = len(trades) / (time.perf_counter() - started)
        publish_trades(client, trades, stream=f"{prefix}drain:md:trade")
        publish_trades(client, trades, stream=f"{prefix}rawdrain:md:trade")

        loop, close = live_strategy_loop(pg_settings)
        try:
            started = time.perf_counter()
            loop.start()
            # stop on the last entry, not on an empty read (that one waits block_ms)
            while loop.stats.entries < len(trades):
                loop.step()
            elapsed = time.perf_counter() - started
        finally:
            close()
        assert loop.stats.trades == len(trades), loop.stats
        figures["C_redis_loop_entries_per_s"] = len(trades) / elapsed
        figures["C_bare_drain_parse_entries_per_s"] = bare_drain(
            client, f"{prefix}drain:md:trade", args.batch, parse=True
        )
        figures["C_bare_drain_no_parse_entries_per_s"] = bare_drain(
            client, f"{prefix}rawdrain:md:trade", args.batch, parse=False
        )
        figures["C_ratio_loop_vs_drain"] = (
            figures["C_redis_loop_entries_per_s"] / figures["C_bare_drain_parse_entries_per_s"]
        )
        figures["bars_closed"] = loop.stats.bars_closed
        figures["signals"] = loop.stats.signals_new
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
        with psycopg.connect(args.database_url, autocommit=True) as conn:
            for name in (schema, f"{schema}_ip"):
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )

    width = max(map(len, figures))
    for name, value in figures.items():
        shown = f"{value:,.3f}" if "ratio" in name else f"{value:,.0f}"
        print(f"{name:<{width}}  {shown}")
    rounded = {k: round(v, 3) for k, v in figures.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(rounded, indent=2))
    print(json.dumps(rounded))


if __name__ == "__main__":
    main()
