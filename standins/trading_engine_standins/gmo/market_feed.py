"""The stand-in's market: the trades the engine reads, played into the stand-in's book.

Without it the stand-in has one fixed price per symbol: MARKET orders fill at it and LIMIT
orders never cross. Following `md:trade` (with XREAD, as a tap: no consumer group, so the
engine's delivery is untouched), each trade becomes a print on the stand-in, which fills the
resting orders it crosses and moves the price MARKET orders fill at. Entries that are not a
GMO trade message are skipped; Redis away is waited out.
"""

from __future__ import annotations

import logging
import threading
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
import redis

from trading_engine_standins.gmo.exchange import Exchange, ExchangeError

log = logging.getLogger(__name__)
# What a malformed entry raises on its way to a print (bad JSON, missing or odd fields,
# numbers that are not numbers, a symbol the stand-in does not list).
_NOT_A_TRADE = (
    orjson.JSONDecodeError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    InvalidOperation,
    ExchangeError,
)


class MarketFeed:
    def __init__(
        self, exchange: Exchange, redis_url: str, stream: str = "md:trade", start: str = "$"
    ) -> None:
        self._exchange, self._stream = exchange, stream
        self._client = redis.Redis.from_url(redis_url, socket_timeout=10)
        self._last_id = start  # "$": only trades published from now on
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.played = 0
        self.skipped = 0

    def start(self) -> MarketFeed:
        """Follows from now on: what is published after this returns is played (Redis away
        at start: from when it answers)."""
        try:
            self._fix_start()
        except redis.RedisError as error:
            log.warning("market feed: %s; will retry", error)
        self._thread = threading.Thread(target=self._follow, name="market-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._client.close()

    def _fix_start(self) -> None:
        """ "$" means "after the last entry when this call is made": given to every XREAD,
        entries added between two calls would be missed. It is fixed to an id once."""
        if self._last_id == "$":
            last = self._client.xrevrange(self._stream, count=1)
            self._last_id = last[0][0] if last else "0-0"

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self._fix_start()
            except redis.RedisError as error:
                log.warning("market feed: %s; retrying in 1s", error)
                self._stop.wait(1.0)
                continue
            break
        while not self._stop.is_set():
            try:
                reply = self._client.xread({self._stream: self._last_id}, count=500, block=500)
            except redis.RedisError as error:
                log.warning("market feed: %s; retrying in 1s", error)
                self._stop.wait(1.0)
                continue
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    self._last_id = entry_id
                    self.play(fields)

    def play(self, fields: dict[Any, Any]) -> bool:
        """One stream entry as a print on the stand-in. False (and counted) if not a trade."""
        try:
            payload = orjson.loads(fields.get(b"payload") or fields.get("payload") or b"")
            if payload.get("channel") != "trades":
                raise ValueError("not a trade")
            price, size = Decimal(payload["price"]), Decimal(payload["size"])
            if not (price > 0 and size > 0):
                raise ValueError("price and size must be positive")
            self._exchange.market_trade(payload["symbol"], price, size, payload.get("side", "BUY"))
        except _NOT_A_TRADE:
            self.skipped += 1
            return False
        self.played += 1
        return True
