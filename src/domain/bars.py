"""Trades → OHLCV bars, one builder per (exchange, symbol, timeframe).

Rules, chosen deliberately:
* Buckets are aligned on the UTC epoch: a 5m bar covers [12:05:00, 12:10:00). A trade belongs
  to the bucket of its *exchange* timestamp, never the time we received it.
* A bar closes when a trade of a later bucket arrives, or when a clock tick passes its end.
* Empty intervals become flat bars: open = high = low = close = the previous close, volume 0.
  Every interval after the first trade has exactly one bar, so indicator windows always span
  the same length of time (a 20-bar SMA is 20 minutes on 1m bars, even in a quiet market).
  Nothing is invented before the first trade.
* A trade for a bucket that is already closed is late: it is counted and reported, never
  merged (that bar was stored and may have produced a signal already).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain.market import Trade
from domain.models import OHLCV
from domain.values import ZERO, Exchange, Symbol, Timeframe, money_context

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def bucket_start(timestamp: datetime, timeframe: Timeframe) -> datetime:
    """Start of the interval that contains `timestamp` (UTC, epoch-aligned)."""
    seconds = timeframe.seconds
    elapsed = timestamp - EPOCH
    whole = elapsed.days * 86400 + elapsed.seconds
    return EPOCH + timedelta(seconds=whole - whole % seconds)


@dataclass
class _OpenBar:
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    first_at: datetime  # open and close follow exchange time, even if trades arrive out of order
    last_at: datetime


@dataclass(frozen=True, slots=True)
class BarUpdate:
    closed: tuple[OHLCV, ...]
    late: bool = False


class BarBuilder:
    """Builds one timeframe's bars for one symbol. Pure: no clock, time comes as arguments."""

    def __init__(self, exchange: Exchange, symbol: Symbol, timeframe: Timeframe) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.timeframe = timeframe
        self.step = timedelta(seconds=timeframe.seconds)
        self._open: _OpenBar | None = None
        self._closed_until: datetime | None = None  # start of the first bucket not closed
        self._last_close: Decimal | None = None
        self.late_trades = 0

    @property
    def closed_until(self) -> datetime | None:
        """Every trade before this time is in a closed (stored) bar or was late."""
        if self._open is not None:
            return self._open.start
        return self._closed_until

    def resume_after(self, bar: OHLCV) -> None:
        """Continue after a stored bar (restart): it and everything before it is closed."""
        if self._open is not None or self._closed_until is not None:
            raise RuntimeError("resume_after() is only for a builder that has seen nothing")
        self._closed_until = bar.timestamp + self.step
        self._last_close = bar.close

    def is_late(self, trade: Trade) -> bool:
        closed_until = self.closed_until
        return closed_until is not None and trade.timestamp < closed_until

    def add(self, trade: Trade) -> BarUpdate:
        if self.is_late(trade):
            self.late_trades += 1
            return BarUpdate((), late=True)
        start = bucket_start(trade.timestamp, self.timeframe)
        closed: list[OHLCV] = []
        if self._open is not None and start > self._open.start:
            closed.append(self._close_open_bar())
        if self._open is None:
            closed.extend(self._flat_bars(until=start))
            price, at = trade.price, trade.timestamp
            self._open = _OpenBar(start, price, price, price, price, ZERO, at, at)
        bar = self._open
        bar.high = max(bar.high, trade.price)
        bar.low = min(bar.low, trade.price)
        if trade.timestamp >= bar.last_at:
            bar.close, bar.last_at = trade.price, trade.timestamp
        if trade.timestamp < bar.first_at:
            bar.open, bar.first_at = trade.price, trade.timestamp
        with money_context():
            bar.volume += trade.size
        return BarUpdate(tuple(closed))

    def tick(self, now: datetime) -> tuple[OHLCV, ...]:
        """Close what `now` has passed: the open bar if it ended, then empty intervals."""
        closed: list[OHLCV] = []
        if self._open is not None and self._open.start + self.step <= now:
            closed.append(self._close_open_bar())
        if self._open is None and self._closed_until is not None:
            closed.extend(self._flat_bars(until=bucket_start(now, self.timeframe)))
        return tuple(closed)

    def close(self) -> tuple[OHLCV, ...]:
        """The data ends here (end of a replay): close the open bar, invent nothing after it."""
        return (self._close_open_bar(),) if self._open is not None else ()

    def _close_open_bar(self) -> OHLCV:
        bar = self._open
        assert bar is not None
        self._open = None
        self._closed_until = bar.start + self.step
        self._last_close = bar.close
        return self._ohlcv(bar.start, bar.open, bar.high, bar.low, bar.close, bar.volume)

    def _flat_bars(self, until: datetime) -> list[OHLCV]:
        if self._closed_until is None or self._last_close is None:
            return []
        bars = []
        price = self._last_close
        while self._closed_until < until:
            bars.append(self._ohlcv(self._closed_until, price, price, price, price, ZERO))
            self._closed_until += self.step
        return bars

    def _ohlcv(
        self, start: datetime, o: Decimal, h: Decimal, lo: Decimal, c: Decimal, volume: Decimal
    ) -> OHLCV:
        return OHLCV(self.exchange, self.symbol, self.timeframe, start, o, h, lo, c, volume)


class MultiTimeframeBars:
    """All configured timeframes of one symbol, fed the same trades."""

    def __init__(self, exchange: Exchange, symbol: Symbol, timeframes: Iterable[Timeframe]) -> None:
        self.builders = {tf: BarBuilder(exchange, symbol, tf) for tf in timeframes}
        if not self.builders:
            raise ValueError("at least one timeframe is needed")
        self.late_trades = 0

    def add(self, trade: Trade) -> BarUpdate:
        """A trade late for any timeframe is late for all: merging it into the longer bars
        only would make the timeframes disagree about the same trades."""
        if any(builder.is_late(trade) for builder in self.builders.values()):
            self.late_trades += 1
            return BarUpdate((), late=True)
        closed: list[OHLCV] = []
        for builder in self.builders.values():
            closed.extend(builder.add(trade).closed)
        return BarUpdate(tuple(closed))

    def tick(self, now: datetime) -> tuple[OHLCV, ...]:
        return tuple(bar for builder in self.builders.values() for bar in builder.tick(now))

    def close(self) -> tuple[OHLCV, ...]:
        return tuple(bar for builder in self.builders.values() for bar in builder.close())

    @property
    def closed_until(self) -> datetime | None:
        """A trade before this time is fully accounted for in every timeframe."""
        ends = [b.closed_until for b in self.builders.values()]
        if any(end is None for end in ends):
            return None
        return min(end for end in ends if end is not None)
