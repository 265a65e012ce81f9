"""A flood of malformed market-data entries mixed with good ones, into a running
`trading-engine run` over real Redis and PostgreSQL: every good entry is processed (the bars
and signals equal an in-process run over the good trades alone), every bad one lands in the
dead-letter stream exactly once with its reason, nothing stays unread, and SIGTERM stops the
engine cleanly.

The engine reads `md:trade`, `md:orderbook` and `md:ticker`; all three get the flood.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from support.cli import COMMAND
from support.private_servers import free_port
from support.reference_run import assert_tables_equal, open_bar_trades, uninterrupted_run
from trading_engine.adapters.marketdata.gmo_messages import (
    entry_fields,
    format_timestamp,
    reason_kind,
)
from trading_engine.adapters.marketdata.synthetic import synthetic_trades
from trading_engine.adapters.sql.connections import connect_postgres
from trading_engine.app.bootstrap.strategy import STRATEGY_GROUP

pytestmark = pytest.mark.postgres
# A past day: bars close on later trades (the feed's clock gets an hour of grace), so the
# result cannot depend on timing.
START = datetime(2025, 3, 3, tzinfo=UTC)
# One trade every ~3 s: a few hundred 1-minute bars, a few dozen signals.
GOOD_TRADES = list(synthetic_trades(start=START, seed=21, count=5000, mean_interval_ms=3000))
GOOD_OTHERS = 600  # tickers and order books: read, counted, acknowledged
BAD = {"trade": 1400, "orderbook": 300, "ticker": 300}
SETTINGS = {
    "OHLCV_TIMEFRAMES": "1m,5m",
    "BAR_CLOSE_GRACE_SECONDS": "3600",  # bars close on later trades: results cannot race
    "STRATEGY_TIMEFRAME": "1m",
    "STRATEGY_NAME": "moving_average_cross",
    "MA_FAST_WINDOW": "3",
    "MA_SLOW_WINDOW": "8",
    "STRATEGY_BATCH_SIZE": "50",
}

Fields = dict  # str -> str, or bytes -> bytes for the undecodable ones
Maker = Callable[[dict], Fields]


def gmo(payload: dict | str) -> Fields:
    text = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
    return {"exchange": "gmo", "payload": text}


def changed(**changes: object) -> Maker:
    """The good message with fields replaced (`...`: removed)."""

    def make(good: dict) -> Fields:
        message = dict(good)
        for name, value in changes.items():
            if value is ...:
                message.pop(name, None)
            else:
                message[name] = value
        return gmo(message)

    return make


def raw(fields: Fields) -> Maker:
    return lambda good: fields


# What is wrong with an entry, and the reason kind the dead letter must give. Any stream.
COMMON: list[tuple[str, Maker]] = [
    ("bad-json", raw(gmo("{oops"))),
    ("bad-json", raw(gmo(""))),
    ("bad-json", raw(gmo("[1, 2, 3]"))),
    ("bad-json", raw(gmo("null"))),
    ("bad-json", raw(gmo("[" * 5000))),  # nested past the parser's depth limit
    ("bad-json", raw(gmo("\ufeff{}"))),  # a byte order mark
    ("bad-json", raw(gmo('{"channel": NaN}'))),
    ("bad-json", raw(gmo("x" * 100_000))),  # a huge string
    ("bad-encoding", raw({b"exchange": b"gmo", b"payload": b"\xff\xfe\x00\x9cgarbage"})),
    ("bad-encoding", raw({b"\xff\xfe": b"x", b"exchange": b"gmo", b"payload": b"{}"})),
    ("bad-encoding", lambda g: {b"exchange": b"gmo", b"payload": random.randbytes(64) + b"\xff"}),
    ("missing-payload", raw({"exchange": "gmo", "data": "{}"})),
    ("missing-payload", raw({"exchange": "gmo"})),
    ("missing-exchange", lambda g: {"payload": orjson.dumps(g).decode()}),
    ("missing-exchange", raw({"": ""})),  # as empty as a stream entry can be
    ("unknown-exchange", lambda g: {"exchange": "binance", "payload": orjson.dumps(g).decode()}),
    ("unknown-exchange", lambda g: {"exchange": "GMO", "payload": orjson.dumps(g).decode()}),
    ("unknown-exchange", lambda g: {"exchange": "", "payload": orjson.dumps(g).decode()}),
    ("wrong-channel", changed(channel=...)),
    ("wrong-channel", changed(channel="executions")),
    ("wrong-channel", changed(channel=["trades"])),
    ("missing-field", changed(symbol=...)),
    ("missing-field", changed(timestamp=None)),
    ("invalid-value", changed(symbol="btc jpy!")),
    ("invalid-value", changed(symbol="")),
    ("invalid-value", changed(symbol=12)),
    ("invalid-value", changed(symbol="A" * 20_000)),
    ("bad-timestamp", changed(timestamp="yesterday")),
    ("bad-timestamp", changed(timestamp="2027-13-01T00:00:00.000Z")),
    ("bad-timestamp", changed(timestamp="2027-02-30T00:00:00.000Z")),
    ("bad-timestamp", changed(timestamp="2027-01-01T00:00:00.000")),
    ("bad-timestamp", changed(timestamp="2027-01-01T00:00:00.000+09:00")),
    ("bad-timestamp", changed(timestamp=1_700_000_000)),
    ("bad-timestamp", changed(timestamp="0000-01-01T00:00:00.000Z")),
]
NUMBERS = ("NaN", "Infinity", "-Infinity", "sNaN", "-1", "0", "0x10", "1E+400", "9" * 5000)
TRADE: list[tuple[str, Maker]] = [
    *[("invalid-value", changed(price=n)) for n in NUMBERS],
    *[("invalid-value", changed(size=n)) for n in NUMBERS],
    ("invalid-value", changed(size="0.000000000000000000001")),  # finer than the domain's
    ("invalid-value", changed(price=15_000_000)),  # a JSON number, not a decimal string
    ("invalid-value", changed(price=1.5)),
    ("invalid-value", changed(size=True)),
    ("invalid-value", changed(price=["1"])),
    ("invalid-value", changed(side="HOLD")),
    ("invalid-value", changed(side=1)),
    ("missing-field", changed(price=...)),
    ("missing-field", changed(size=...)),
    ("missing-field", changed(side=...)),
    ("wrong-channel", changed(channel="ticker")),
]
TICKER: list[tuple[str, Maker]] = [
    *[("invalid-value", changed(last=n)) for n in NUMBERS],
    ("invalid-value", changed(bid=1)),
    ("missing-field", changed(volume=...)),
    ("wrong-channel", changed(channel="trades")),
]
ORDERBOOK: list[tuple[str, Maker]] = [
    ("invalid-value", changed(asks="none")),
    ("invalid-value", changed(bids=[["1", "2"]])),
    ("invalid-value", changed(asks=[{"price": "-1", "size": "1"}])),
    ("invalid-value", changed(bids=[{"price": "1", "size": "NaN"}])),
    ("missing-field", changed(asks=[{"price": "1"}])),
    ("missing-field", changed(bids=...)),
    ("wrong-channel", changed(channel="ticker")),
]
KINDS = {"trade": COMMON + TRADE, "ticker": COMMON + TICKER, "orderbook": COMMON + ORDERBOOK}


def good_message(kind: str, rng: random.Random) -> dict:
    at = format_timestamp(START + timedelta(seconds=rng.randrange(0, 3600)))
    price = rng.randrange(14_000_000, 16_000_000)
    if kind == "ticker":
        numbers = {"ask": price + 5, "bid": price - 5, "high": price + 99, "low": price - 99}
        numbers |= {"last": price, "volume": "12.5"}
        return {
            "channel": "ticker",
            **{k: str(v) for k, v in numbers.items()},
            "symbol": "BTC_JPY",
            "timestamp": at,
        }
    if kind == "orderbook":
        return {
            "channel": "orderbooks",
            "asks": [{"price": str(price + i), "size": "0.1"} for i in range(1, 4)],
            "bids": [{"price": str(price - i), "size": "0.2"} for i in range(1, 4)],
            "symbol": "BTC_JPY",
            "timestamp": at,
        }
    return orjson.loads(entry_fields(GOOD_TRADES[0])["payload"])


def flood(rng: random.Random) -> list[tuple[str, Fields, str | None]]:
    """(stream kind, fields, expected dead-letter kind or None for a good entry), in the
    order they are published: the good trades in time order, the rest scattered among them."""
    entries: list[tuple[str, Fields, str | None]] = [
        ("trade", entry_fields(t), None) for t in GOOD_TRADES
    ]
    extra: list[tuple[str, Fields, str | None]] = []
    for index in range(GOOD_OTHERS):
        kind = ("ticker", "orderbook")[index % 2]
        extra.append((kind, gmo(good_message(kind, rng)), None))
    for kind, count in BAD.items():
        makers = KINDS[kind]
        for index in range(count):
            expected, make = makers[index % len(makers)]  # every maker, many times
            extra.append((kind, make(good_message(kind, rng)), expected))
    for entry in extra:
        entries.insert(rng.randrange(0, len(entries) + 1), entry)
    return entries


def publish(client: redis.Redis, prefix: str, entries) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(entries), 200):
        pipe = client.pipeline(transaction=False)
        for kind, fields, _ in entries[start : start + 200]:
            pipe.xadd(f"{prefix}md:{kind}", fields)
        ids += [i.decode() for i in pipe.execute()]
    return ids


def lag(client: redis.Redis, stream: str) -> int | None:
    for info in client.xinfo_groups(stream):
        if info["name"].decode() == STRATEGY_GROUP:
            return info["lag"]
    return None


def run_engine(env: dict[str, str], tmp_path: Path, publish_all: Callable[[], list[str]]):
    """Start `trading-engine run`, publish while it reads, wait until every stream is read,
    SIGTERM it. Returns the published ids, the strategy's report and (with HEALTH_PORT) what
    /metrics said just before the stop."""
    client = redis.Redis.from_url(env["REDIS_URL"])
    streams = [f"{env['STREAM_PREFIX']}md:{kind}" for kind in BAD]
    logs = tmp_path / "engine.log"
    with logs.open("ab") as out:  # a file, not a pipe nobody reads while the engine runs
        engine = subprocess.Popen([COMMAND, "run"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        time.sleep(1.0)  # the flood arrives while the engine reads
        ids = publish_all()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if all(lag(client, stream) == 0 for stream in streams):
                break
            time.sleep(0.2)
        time.sleep(0.5)  # the batch read last is finished before the stop
        metrics = ""
        if env.get("HEALTH_PORT"):
            metrics = httpx.get(f"http://127.0.0.1:{env['HEALTH_PORT']}/metrics", timeout=5).text
        engine.send_signal(signal.SIGTERM)
        engine.wait(60)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait(10)
        client.close()
    output = logs.read_text(errors="replace").strip().splitlines()
    assert engine.returncode == 0, "\n".join(output[-40:])
    return ids, orjson.loads(output[-1])["strategy"], metrics


def engine_env(pg_url: str, pg_schema: str, redis_url: str, redis_prefix: str) -> dict:
    return {
        **os.environ,
        **SETTINGS,
        "ENABLE_STRATEGY": "true",
        "ENABLE_EXECUTION": "false",
        "ENABLE_PROJECTIONS": "false",
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"{pg_url}?schema={pg_schema}",
        "STREAM_PREFIX": redis_prefix,
        "LOG_LEVEL": "ERROR",
    }


def test_a_flood_of_malformed_entries_dead_letters_each_once_and_loses_no_good_one(
    tmp_path: Path, pg_url: str, pg_schema: str, redis_url: str, redis_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    streams = {kind: f"{redis_prefix}md:{kind}" for kind in BAD}
    env = engine_env(pg_url, pg_schema, redis_url, redis_prefix)
    env["HEALTH_PORT"] = str(free_port())
    entries = flood(random.Random(21))
    ids, report, metrics = run_engine(env, tmp_path, lambda: publish(client, redis_prefix, entries))

    bad = {
        (kind, entry_id): expected
        for (kind, _, expected), entry_id in zip(entries, ids, strict=True)
        if expected is not None
    }
    letters = client.xrange(f"{redis_prefix}md:dead-letter")
    seen: Counter = Counter()
    for _, letter in letters:
        source = letter[b"source_stream"].decode()
        kind = source.removeprefix(f"{redis_prefix}md:")
        key = (kind, letter[b"source_id"].decode())
        seen[key] += 1
        assert key in bad, f"a good entry was dead-lettered: {key} {letter}"
        reason = letter[b"reason"].decode()
        assert reason_kind(reason) == bad[key], (key, reason)
        assert letter[b"fields"]  # the original, kept for a look and a replay
    assert seen == Counter(bad.keys())  # every bad entry, exactly once
    for stream in streams.values():
        assert lag(client, stream) == 0
    for kind in ("orderbook", "ticker"):
        assert client.xpending(streams[kind], STRATEGY_GROUP)["pending"] == 0
    # md:trade: only the trades of the bars still open (the last 1m/5m bars) wait unacked
    pending = client.xpending(streams["trade"], STRATEGY_GROUP)["pending"]
    assert pending == open_bar_trades(GOOD_TRADES)
    assert report["trades"] == len(GOOD_TRADES)
    assert report["other_events"] == GOOD_OTHERS
    assert report["late_trades"] == 0
    # counted by reason in the stop report and in /metrics
    assert report["dead_letters"] == dict(Counter(bad.values()))
    scraped = {
        (labels, float(number))
        for labels, number in re.findall(
            r"^trading_engine_dead_letters_total\{(.*)\} (\S+)$", metrics, re.MULTILINE
        )
    }
    assert scraped == {
        (f'reason="{kind}",source="market"', float(n)) for kind, n in Counter(bad.values()).items()
    }

    reference = uninterrupted_run(SETTINGS, GOOD_TRADES, tmp_path)  # the good trades alone
    try:
        assert_tables_equal(pg_url, pg_schema, reference)
    finally:
        client.close()
    kinds = Counter(bad.values())
    print(
        f"\nmalformed flood: good {len(GOOD_TRADES)} trades + {GOOD_OTHERS} tickers/books, "
        f"bad {len(bad)} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}), "
        f"dead-lettered {len(letters)} (each bad id once, none good), processed "
        f"{report['trades']} trades + {report['other_events']} others; bars 1m/5m "
        f"{reference.counts} and {len(reference.signals)} signals equal "
        f"to the good trades alone; lag 0, pending only the open bars' {pending} trades"
    )


def test_trades_of_symbols_not_traded_here_are_skipped_not_dead_lettered(
    tmp_path: Path, pg_url: str, pg_schema: str, redis_url: str, redis_prefix: str
) -> None:
    """A shared feed carries every symbol of the venue: well-formed trades of a symbol not in
    SYMBOLS are not bad input, so they are acknowledged and counted, with no bars or signals
    (and none of them in the dead-letter stream)."""
    client = redis.Redis.from_url(redis_url)
    good = [gmo(orjson.loads(entry_fields(t)["payload"])) for t in GOOD_TRADES[:200]]
    others = [
        changed(symbol="ETH_JPY")(orjson.loads(entry_fields(t)["payload"]))
        for t in GOOD_TRADES[:50]
    ]
    entries = [("trade", fields, None) for fields in good + others]
    env = engine_env(pg_url, pg_schema, redis_url, redis_prefix)
    try:
        _, report, _ = run_engine(env, tmp_path, lambda: publish(client, redis_prefix, entries))
        assert client.xlen(f"{redis_prefix}md:dead-letter") == 0
        assert report["trades"] == len(good)
        assert report["other_symbols"] == len(others)
        conn = connect_postgres(pg_url, schema=pg_schema)
        try:
            symbols = {row[0] for row in conn.execute("SELECT DISTINCT symbol FROM ohlcv")}
        finally:
            conn.close()
        assert symbols <= {"BTC_JPY"}
    finally:
        client.close()
