"""The same trades through the live service (Redis + PostgreSQL, `trading-engine run` with
the simulated exchange) and through `trading-engine backtest`: the same signals and the same
orders. Backtest and live cannot drift apart, because they are the same loops."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from support.cli import COMMAND, run_cli
from support.engine_output import EngineProcess
from trading_engine.adapters.eventstore.postgres import postgres_event_store
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.adapters.marketdata.synthetic import synthetic_trades
from trading_engine.adapters.marketdata.trade_files import write_gmo_trades
from trading_engine.domain.order import Order
from trading_engine.domain.signal_decision import SignalDecision

pytestmark = pytest.mark.postgres
STRATEGY = {
    "STRATEGY_NAME": "moving_average_cross",
    "MA_FAST_WINDOW": "5",
    "MA_SLOW_WINDOW": "20",
    "ENABLE_SHORTING": "false",
    "OHLCV_TIMEFRAMES": "1m",
    "BAR_CLOSE_GRACE_SECONDS": "3600",  # live, bars close on later trades, as in a backtest
    "STRATEGY_TIMEFRAME": "1m",
}


def decisions_and_orders(store) -> tuple[list[tuple], list[tuple]]:
    """Signals as execution received them, and the orders they caused, by bar time (the
    exchange names differ: each backtest trades as its own)."""
    signals, orders, time_of = [], [], {}
    start = 1
    while page := store.read_log(start, 5000):
        for recorded in page:
            event = recorded.event
            if isinstance(event, SignalDecision.Received):
                time_of[event.signal_id] = event.signal_time
                signals.append((event.symbol, event.action, event.signal_time, event.price_ref))
            elif isinstance(event, Order.Submitted):
                orders.append(
                    (
                        time_of[event.signal_id],
                        event.leg,
                        event.side,
                        event.order_type,
                        event.size,
                        event.settle,
                    )
                )
        start = page[-1].position + 1
    return sorted(signals), sorted(orders)


@pytest.fixture
def trades_file(tmp_path: Path) -> Iterator[Path]:
    # A past day's trades: the live loop closes bars on later trades only (its feed clock's
    # grace is an hour), exactly as a replay in a backtest does.
    start = datetime(2025, 3, 3, 9, tzinfo=UTC)
    path = tmp_path / "trades.csv"
    # Trades of at least 0.01 (the order size): a market order fills whole at the next trade,
    # so live (polling every 50 ms) and backtest see the same positions when they decide.
    trades = synthetic_trades(start=start, seed=5, count=30_000, size_step=Decimal("0.01"))
    write_gmo_trades(path, trades)
    return path


def test_live_and_backtest_give_the_same_signals_and_orders(
    tmp_path: Path,
    trades_file: Path,
    pg_url: str,
    pg_schema: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        **STRATEGY,
        "DATABASE_URL": f"{pg_url}?schema={pg_schema}",
        "REDIS_URL": redis_url,
        "STREAM_PREFIX": redis_prefix,
        "ENABLE_STRATEGY": "true",
        "ENABLE_EXECUTION": "true",
        "EXCHANGE_NAME": "gmo",
        "PAPER_TRADING": "true",
        "ORDER_TYPE": "MARKET",
        "ORDER_SIZE": "0.01",
        "MAX_POSITION_SIZE": "100",
        "MAX_CONSECUTIVE_LOSSES": "100000",
        "MAX_DRAWDOWN_PCT": "100",
        "ORDER_POLL_INTERVAL_SECONDS": "0.05",
    }
    process = EngineProcess([COMMAND, "run"], env=env, cwd=tmp_path)
    client = redis.Redis.from_url(redis_url)
    try:
        # Paced at 500× the market's time (30,000 trades, ~4 h, in ~30 s): live, an order
        # fills at a trade that arrives after it; unpaced, the strategy would have shown the
        # exchange every trade before the first order left, and no order would ever fill.
        # The engine must keep up with the pace (idle between trades) for that: at 1,000× a
        # loaded machine (the suite on several workers; eight busy processes on two cores)
        # put it behind, its orders filled at later trades and the orders differed.
        replay = run_cli("replay", "--file", trades_file, "--speed", "500", env=env, cwd=tmp_path)
        assert replay.returncode == 0, replay.stderr
        signals_stream = f"{redis_prefix}signal:gmo"

        def settled() -> bool:
            groups = {g["name"].decode(): g for g in client.xinfo_groups(f"{redis_prefix}md:trade")}
            strategy = groups.get("trading-engine-strategy")
            if strategy is None or strategy["lag"] != 0:
                return False
            if not client.exists(signals_stream) or client.xlen(signals_stream) == 0:
                return False
            for group in client.xinfo_groups(signals_stream):
                read = int(group["entries-read"] or 0) - int(group["pending"])
                return read == client.xlen(signals_stream)
            return False

        deadline = time.monotonic() + 120
        while not settled() and time.monotonic() < deadline:
            time.sleep(0.25)
        assert settled(), process.stderr.read1().decode()[-3000:] if process.poll() else "busy"
        time.sleep(1.5)  # the last fills are polled in
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err.decode()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
        client.close()
    live_store = postgres_event_store(pg_url, schema=pg_schema)
    try:
        live_signals, live_orders = decisions_and_orders(live_store)
        venues = {
            r.event.exchange
            for r in live_store.read_log(1, 1_000_000)
            if isinstance(r.event, Order.Submitted)
        }
    finally:
        live_store.close()
    # Paper trading records under its own venue, which exports for taxes leave out.
    assert venues == {"paper_gmo"}
    tax = run_cli(
        "export", "tax", "--year", "2025", "--method", "moving-average", env=env, cwd=tmp_path
    )
    assert tax.returncode == 0, tax.stderr
    document = json.loads(tax.stdout)
    assert (document["trades"], document["simulated_left_out"]) == (0, ["paper_gmo"])

    backtest = run_cli(
        "backtest",
        "--trades",
        trades_file,
        "--timeframe",
        "1m",
        "--strategy",
        "moving_average_cross",
        "--param",
        "fast_window=5",
        "--param",
        "slow_window=20",
        "--no-shorting",
        "--size",
        "0.01",
        "--cash",
        "1000000000",
        "--out",
        "bt",
        env={**env, "DATABASE_URL": None},
        cwd=tmp_path,
    )
    assert backtest.returncode == 0, backtest.stderr[-3000:]
    store = sqlite_event_store(tmp_path / "bt" / "events.sqlite3")
    try:
        backtest_signals, backtest_orders = decisions_and_orders(store)
    finally:
        store.close()
    assert len(live_signals) >= 5  # enough crosses to mean something
    assert backtest_signals == live_signals
    assert backtest_orders == live_orders
    assert len(live_orders) >= 3

    conn = sqlite3.connect(tmp_path / "bt" / "events.sqlite3")  # the backtest's own tables too
    try:
        stored = conn.execute("SELECT count(*) FROM signals").fetchone()[0]
    finally:
        conn.close()
    assert stored == len(backtest_signals)
