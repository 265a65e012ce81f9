"""The seed's plain entities: a bar, a signal, an execution (fill).

Orders and positions are event-sourced aggregates and live in `order.py` / `position.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.values import (
    ZERO,
    Exchange,
    Side,
    SignalAction,
    Symbol,
    Timeframe,
    aware,
    decimal_of,
    identifier,
    non_negative,
    positive,
)


@dataclass(frozen=True, slots=True)
class OHLCV:
    exchange: Exchange
    symbol: Symbol
    timeframe: Timeframe
    timestamp: datetime  # start of the bar's interval, UTC
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    def __post_init__(self) -> None:
        aware("timestamp", self.timestamp)
        for name in ("open", "high", "low", "close"):
            object.__setattr__(self, name, positive(name, getattr(self, name)))
        object.__setattr__(self, "volume", non_negative("volume", self.volume))
        if not (self.low <= min(self.open, self.close) and self.high >= max(self.open, self.close)):
            raise InvalidValue("ohlcv", self, "low/high do not bound open and close")

    @classmethod
    def flat(
        cls,
        exchange: Exchange,
        symbol: Symbol,
        timeframe: Timeframe,
        start: datetime,
        price: Decimal,
    ) -> OHLCV:
        """An empty interval at the previous bar's close (already checked): no trades, volume 0.
        Made without re-checking `price`, since a long quiet stretch is millions of these."""
        return cls.checked(exchange, symbol, timeframe, start, price, price, price, price, ZERO)

    @classmethod
    def checked(
        cls,
        exchange: Exchange,
        symbol: Symbol,
        timeframe: Timeframe,
        start: datetime,
        open_: Decimal,
        high: Decimal,
        low: Decimal,
        close: Decimal,
        volume: Decimal,
    ) -> OHLCV:
        """A bar whose values the caller has checked as `__post_init__` would (UTC start,
        prices > 0 and volume >= 0 that fit DECIMAL(20,8), low <= open, close <= high): a
        bar file reader checks each cell to name its row and column, and a second check per
        bar was a tenth of a backtest's time."""
        bar = object.__new__(cls)
        for name, value in (
            ("exchange", exchange),
            ("symbol", symbol),
            ("timeframe", timeframe),
            ("timestamp", start),
            ("open", open_),
            ("high", high),
            ("low", low),
            ("close", close),
            ("volume", volume),
        ):
            object.__setattr__(bar, name, value)
        return bar


@dataclass(frozen=True, slots=True)
class Signal:
    """A strategy's decision. `signal_id` is stable: the same decision always has the same id."""

    signal_id: str
    exchange: Exchange
    symbol: Symbol
    strategy: str
    action: SignalAction
    confidence: Decimal
    price_ref: Decimal
    timestamp: datetime
    indicators: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "signal_id", identifier("signal_id", self.signal_id))
        if not isinstance(self.exchange, Exchange):
            object.__setattr__(self, "exchange", Exchange(self.exchange))
        if not isinstance(self.symbol, Symbol):
            object.__setattr__(self, "symbol", Symbol(self.symbol))
        object.__setattr__(self, "action", SignalAction.parse(self.action))
        confidence = decimal_of("confidence", self.confidence)
        if not ZERO <= confidence <= 1:
            raise InvalidValue("confidence", self.confidence, "must be between 0 and 1")
        object.__setattr__(self, "confidence", confidence)
        object.__setattr__(self, "price_ref", positive("price_ref", self.price_ref))
        aware("timestamp", self.timestamp)


@dataclass(frozen=True, slots=True)
class Execution:
    """One fill reported by the exchange. `execution_id` is the exchange's, unique per exchange."""

    execution_id: str
    side: Side
    price: Decimal
    size: Decimal
    fee: Decimal
    executed_at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "execution_id", identifier("execution_id", self.execution_id))
        object.__setattr__(self, "side", Side.parse(self.side))
        object.__setattr__(self, "price", positive("price", self.price))
        object.__setattr__(self, "size", positive("size", self.size))
        # Fees may be negative: GMO pays makers a rebate on some symbols.
        object.__setattr__(self, "fee", decimal_of("fee", self.fee))
        aware("executed_at", self.executed_at)


_SIGNAL_NAMESPACE = UUID("3b8e2f4c-9a71-5d26-8c0e-5f7a1d2b9e43")


def signal_id_for(strategy: str, parameters: dict[str, Any], bar: OHLCV) -> str:
    """One id per (strategy and its parameters, exchange, symbol, timeframe, bar).

    A strategy decides at most once per closed bar, so the bar names the decision: the same
    entries replayed after a crash give the same id, and the store and the stream keep one.
    The action is deliberately not part of the id: a decision recomputed differently after a
    restart must not become a second signal for the same bar.
    """
    params = ",".join(f"{key}={parameters[key]}" for key in sorted(parameters))
    key = (
        f"{strategy}({params})|{bar.exchange}|{bar.symbol}|{bar.timeframe}|"
        f"{bar.timestamp.isoformat()}"
    )
    return str(uuid5(_SIGNAL_NAMESPACE, key))
