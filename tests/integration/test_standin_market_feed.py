"""`python -m trading_engine_standins.gmo --market-from-redis`: the stand-in as its own
process, fed the trades published on Redis, fills orders at the market's prices (the
compose deployment's paper trading), and skips entries that are not trades."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import redis

from support.private_servers import free_port
from trading_engine.adapters.brokers.gmo import GmoBroker
from trading_engine.adapters.marketdata.stream_writer import publish_trades
from trading_engine.domain.market import Trade
from trading_engine.domain.values import OrderStatus, OrderType, Side
from trading_engine.ports.broker import OrderRequest


def eventually(condition: Callable[[], bool], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def last_price(base_url: str) -> Decimal:
    answer = httpx.get(f"{base_url}/public/v1/ticker", params={"symbol": "BTC_JPY"}, timeout=5)
    return Decimal(answer.json()["data"][0]["last"])


def a_trade(price: int, size: str = "0.5") -> Trade:
    return Trade(
        exchange="gmo",
        symbol="BTC_JPY",
        side=Side.SELL,
        price=Decimal(price),
        size=Decimal(size),
        timestamp=datetime.now(UTC),
    )


def test_the_stand_in_fills_at_the_prices_on_the_stream(redis_url: str, redis_prefix: str) -> None:
    port = free_port()
    stream = f"{redis_prefix}md:trade"
    standin = subprocess.Popen(
        [sys.executable, "-m", "trading_engine_standins.gmo", "--port", str(port), "--api-key", "k",
         "--api-secret", "s", "--market-from-redis", redis_url, "--market-stream", stream],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    broker = None
    try:
        base_url = standin.stdout.readline().decode().strip()  # printed once it serves
        assert base_url == f"http://127.0.0.1:{port}"
        broker = GmoBroker(base_url, "k", "s", timeout=5.0)
        publish_trades(client, [a_trade(15_000_000)], stream=stream)
        client.xadd(stream, {"exchange": "gmo", "payload": "{not json"})  # skipped
        assert eventually(lambda: last_price(base_url) == Decimal(15_000_000))

        resting = broker.place_order(
            OrderRequest("o-limit", "BTC_JPY", Side.BUY, OrderType.LIMIT, Decimal("0.1"),
                         Decimal(14_900_000))
        )  # fmt: skip
        assert broker.fetch_order(resting).status is OrderStatus.NEW
        publish_trades(client, [a_trade(14_950_000)], stream=stream)  # does not reach it
        time.sleep(0.5)
        assert broker.fetch_order(resting).status is OrderStatus.NEW
        publish_trades(client, [a_trade(14_880_000)], stream=stream)  # crosses it
        assert eventually(lambda: broker.fetch_order(resting).status is OrderStatus.FILLED)
        (fill,) = broker.fetch_executions(resting)
        assert fill.price == Decimal(14_900_000)  # a maker fills at its own price

        market = broker.place_order(
            OrderRequest("o-market", "BTC_JPY", Side.SELL, OrderType.MARKET, Decimal("0.1"))
        )
        (fill,) = broker.fetch_executions(market)
        assert fill.price == Decimal(14_880_000)  # the last print, not a fixed price
    finally:
        if broker is not None:
            broker.close()
        client.close()
        standin.terminate()
        standin.wait(10)
