"""Market data as the strategy sees it: trades, order-book snapshots, tickers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.values import Exchange, Side, Symbol, aware, non_negative, positive


@dataclass(frozen=True, slots=True)
class Trade:
    exchange: Exchange
    symbol: Symbol
    side: Side  # the taker's side
    price: Decimal
    size: Decimal
    timestamp: datetime  # the exchange's time of the trade, UTC

    def __post_init__(self) -> None:
        object.__setattr__(self, "side", Side.parse(self.side))
        object.__setattr__(self, "price", positive("price", self.price))
        object.__setattr__(self, "size", positive("size", self.size))
        aware("timestamp", self.timestamp)


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: Decimal
    size: Decimal

    def __post_init__(self) -> None:
        object.__setattr__(self, "price", positive("price", self.price))
        object.__setattr__(self, "size", non_negative("size", self.size))


@dataclass(frozen=True, slots=True)
class OrderBookSnapshot:
    """A full book (GMO sends a full snapshot each time): asks ascending, bids descending."""

    exchange: Exchange
    symbol: Symbol
    asks: tuple[BookLevel, ...]
    bids: tuple[BookLevel, ...]
    timestamp: datetime

    def __post_init__(self) -> None:
        aware("timestamp", self.timestamp)
        if any(a.price > b.price for a, b in zip(self.asks, self.asks[1:], strict=False)):
            raise InvalidValue("asks", self.asks[:3], "must be in ascending price order")
        if any(a.price < b.price for a, b in zip(self.bids, self.bids[1:], strict=False)):
            raise InvalidValue("bids", self.bids[:3], "must be in descending price order")

    @property
    def best_bid(self) -> Decimal | None:
        return self.bids[0].price if self.bids else None

    @property
    def best_ask(self) -> Decimal | None:
        return self.asks[0].price if self.asks else None


@dataclass(frozen=True, slots=True)
class Ticker:
    exchange: Exchange
    symbol: Symbol
    ask: Decimal
    bid: Decimal
    high: Decimal
    low: Decimal
    last: Decimal
    volume: Decimal
    timestamp: datetime

    def __post_init__(self) -> None:
        for name in ("ask", "bid", "high", "low", "last"):
            object.__setattr__(self, name, positive(name, getattr(self, name)))
        object.__setattr__(self, "volume", non_negative("volume", self.volume))
        aware("timestamp", self.timestamp)


MarketEvent = Trade | OrderBookSnapshot | Ticker
