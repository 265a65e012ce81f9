"""Replaying trades into a real Redis: entries exactly as the collector writes them, paced.

Needs the Redis at `TEST_REDIS_URL` (default redis://127.0.0.1:6379/0). Each test writes to
its own `<prefix>md:trade` stream (tests/conftest.py's `redis_prefix`), deleted afterwards.
"""

from __future__ import annotations

import bisect
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis

from trading_engine.adapters.marketdata.gmo_messages import parse_entry
from trading_engine.adapters.marketdata.stream_writer import publish_trades, trade_fields
from trading_engine.adapters.marketdata.synthetic import synthetic_trades
from trading_engine.domain.market import Trade
from trading_engine.domain.values import Exchange, Side, Symbol

START = datetime(2025, 7, 1, 21, tzinfo=UTC)


@pytest.fixture(scope="module")
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    connection.close()


@pytest.fixture
def stream(redis_prefix: str) -> str:
    return f"{redis_prefix}md:trade"  # deleted with the prefix's keys


def expected_payload(trade: Trade) -> dict[str, str]:
    """GMO's trades message, written out independently of the code under test."""
    utc = trade.timestamp.astimezone(UTC)
    return {
        "channel": "trades",
        "price": format(trade.price, "f"),
        "side": trade.side.value,
        "size": format(trade.size, "f"),
        "timestamp": utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z",
        "symbol": str(trade.symbol),
    }


def test_entry_is_gmos_websocket_message() -> None:
    moment = datetime(2025, 6, 30, 21, 0, 19, 862_000, tzinfo=UTC)
    trade = Trade(Exchange("gmo"), Symbol("BTC_JPY"), Side.BUY, Decimal("15499938.000"),
                  Decimal("0.0010"), moment)  # fmt: skip
    assert trade_fields(trade) == {
        "exchange": "gmo",
        "payload": '{"channel":"trades","price":"15499938.000","side":"BUY","size":"0.0010",'
        '"timestamp":"2025-06-30T21:00:19.862Z","symbol":"BTC_JPY"}',
    }


def test_publishes_every_trade_in_order_exactly(client: redis.Redis, stream: str) -> None:
    trades = list(synthetic_trades(start=START, seed=9, count=1_234))
    progress: list[int] = []

    written = publish_trades(client, iter(trades), stream=stream, batch=100,
                             progress=progress.append)  # fmt: skip

    assert written == 1_234
    assert progress == [*range(100, 1_201, 100), 1_234]
    entries = client.xrange(stream)
    assert len(entries) == 1_234
    for (_, fields), trade in zip(entries, trades, strict=True):
        assert set(fields) == {"exchange", "payload"}
        assert fields["exchange"] == "gmo"
        assert json.loads(fields["payload"]) == expected_payload(trade)
        assert list(json.loads(fields["payload"])) == list(expected_payload(trade))  # key order
        assert parse_entry(stream, fields) == trade  # what the consumer reads back is the trade


def test_nothing_to_publish_creates_nothing(client: redis.Redis, stream: str) -> None:
    assert publish_trades(client, [], stream=stream, speed=1.0) == 0
    assert client.exists(stream) == 0


def test_never_trims_by_default_and_trims_when_asked(client: redis.Redis, stream: str) -> None:
    trades = list(synthetic_trades(start=START, seed=2, count=3_000))
    publish_trades(client, trades, stream=stream)
    assert client.xlen(stream) == 3_000
    client.delete(stream)

    publish_trades(client, trades, stream=stream, maxlen=500)
    assert 500 <= client.xlen(stream) < 1_000  # approximate: whole nodes are dropped


class FakeTime:
    """A monotonic clock that moves only when slept on; records each sleep and how many
    entries the stream held at that moment."""

    def __init__(self, client: redis.Redis, stream: str) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []
        self.held: list[int] = []
        self.client, self.stream = client, stream

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.held.append(self.client.xlen(self.stream))
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("speed", [1.0, 60.0, 1_000.0])
def test_speed_keeps_the_gaps_between_trades(
    client: redis.Redis, stream: str, speed: float
) -> None:
    trades = list(synthetic_trades(start=START, seed=4, count=3_000))  # with a quiet spell
    span = (trades[-1].timestamp - trades[0].timestamp).total_seconds()
    assert span > 20 * 60
    fake = FakeTime(client, stream)

    written = publish_trades(client, trades, stream=stream, speed=speed, batch=50,
                             sleep=fake.sleep, clock=fake.clock)  # fmt: skip

    assert written == 3_000
    assert sum(fake.sleeps) == pytest.approx(span / speed, rel=1e-9, abs=1e-6)
    # At every sleep, exactly the trades already due had been written: none held back, none
    # sent early (trades sharing a millisecond never wait for each other).
    offsets = [(t.timestamp - trades[0].timestamp).total_seconds() / speed for t in trades]
    elapsed = 0.0
    for slept, held in zip(fake.sleeps, fake.held, strict=True):
        assert held == bisect.bisect_right(offsets, elapsed + 1e-9)
        elapsed += slept
    distinct_times = len({t.timestamp for t in trades})
    assert len(fake.sleeps) == distinct_times - 1


def test_speed_zero_never_sleeps(client: redis.Redis, stream: str) -> None:
    fake = FakeTime(client, stream)
    trades = synthetic_trades(start=START, seed=4, count=2_000)
    assert (
        publish_trades(client, trades, stream=stream, sleep=fake.sleep, clock=fake.clock) == 2_000
    )
    assert fake.sleeps == []


def test_real_clock_waits_at_least_the_scaled_span(client: redis.Redis, stream: str) -> None:
    trades = [
        Trade(Exchange("gmo"), Symbol("BTC_JPY"), Side.SELL, Decimal(15_000_000 + i),
              Decimal("0.01"), START + timedelta(milliseconds=250 * i))
        for i in range(5)
    ]  # fmt: skip
    began = time.monotonic()
    publish_trades(client, trades, stream=stream, speed=10.0)  # 1 s of trades in 0.1 s
    assert time.monotonic() - began >= 0.1 - 0.005
    assert client.xlen(stream) == 5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"speed": -1.0}, "speed"),
        ({"speed": float("nan")}, "speed"),
        ({"batch": 0}, "batch"),
        ({"maxlen": 0}, "maxlen"),
    ],
)
def test_refuses_bad_options(client: redis.Redis, stream: str, options: dict, message: str) -> None:
    trades = synthetic_trades(start=START, seed=1, count=10)
    with pytest.raises(ValueError, match=message):
        publish_trades(client, trades, stream=stream, **options)
    assert client.exists(stream) == 0
