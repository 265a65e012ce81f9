"""Trades → OHLCV bars, one builder per (exchange, symbol, timeframe).

Rules, chosen deliberately:
* Buckets are aligned on the UTC epoch: a 5m bar covers [12:05:00, 12:10:00); weeks start on
  Monday, months on the 1st (UTC, see `Timeframe`). A trade belongs to the bucket of its
  *exchange* timestamp, never the time we received it.
* A bar closes when a trade of a later bucket arrives, or when a clock tick passes its end
  (the caller's clock: the feed's, see `feed_clock.py`, never the host's).
* Empty intervals become flat bars: open = high = low = close = the previous close, volume 0.
  Every interval after the first trade has exactly one bar, so indicator windows always span
  the same length of time (a 20-bar SMA is 20 minutes on 1m bars, even in a quiet market).
  Nothing is invented before the first trade.
* Empty intervals are handed out as a `FlatRun`, made into bars only as the caller iterates:
  a trade stamped a year after the previous one on 1s bars is 31 million bars, and the caller
  stores them in chunks (and may stop between two) instead of holding them all at once.
* A trade for a bucket that is already closed is late: it is counted and reported, never
  merged (that bar was stored and may have produced a signal already).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import chain, pairwise

from trading_engine.domain.market import Trade
from trading_engine.domain.models import OHLCV
from trading_engine.domain.values import ZERO, Exchange, Symbol, Timeframe, money_context

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def bucket_start(timestamp: datetime, timeframe: Timeframe) -> datetime:
    """Start of the interval that contains `timestamp` (UTC, epoch-aligned; weeks from a
    Monday, months from the 1st: see `Timeframe`)."""
    return timeframe.start_of(timestamp)


def bar_end(bar: OHLCV) -> datetime:
    """When a bar closes: its start plus its length, or for a calendar timeframe (weeks,
    months) the end of the period that holds its timestamp."""
    return bar.timeframe.end_of(bar.timestamp)


def nested(timeframes: Sequence[Timeframe]) -> bool:
    """Each length divides the next longer one (1s, 1m, 5m, 1h ...): every bar boundary of a
    longer timeframe is one of each shorter, which is what lets a restart resume all of them
    at one point in time (see `StrategyLoop`)."""
    ordered = sorted(set(timeframes), key=lambda tf: (tf.seconds, tf.value))
    return all(_shares_boundaries(shorter, longer) for shorter, longer in pairwise(ordered))


_DAY = 86_400
_MONDAY_OFFSET = 4 * _DAY  # 1970-01-05, where weeks are counted from, after the epoch


def _shares_boundaries(shorter: Timeframe, longer: Timeframe) -> bool:
    """Every boundary of `longer` is a boundary of `shorter`."""
    if shorter.is_monthly:
        return longer.is_monthly and longer.count % shorter.count == 0
    if longer.is_monthly:  # months start at midnight, a whole number of days from the epoch
        return _DAY % shorter.seconds == 0
    offset = (_MONDAY_OFFSET if longer.unit == "w" else 0) - (
        _MONDAY_OFFSET if shorter.unit == "w" else 0
    )
    return longer.seconds % shorter.seconds == 0 and offset % shorter.seconds == 0


def _periods(timeframe: Timeframe, start: datetime, end: datetime) -> int:
    """How many bars of `timeframe` fit in [start, end), both on its boundaries."""
    if timeframe.is_monthly:
        months = (end.year - start.year) * 12 + end.month - start.month
        return months // timeframe.count
    return int((end - start).total_seconds()) // timeframe.seconds


@dataclass(frozen=True, slots=True)
class FlatRun:
    """The empty intervals [start, end) of one timeframe: flat bars at `price`, on demand."""

    exchange: Exchange
    symbol: Symbol
    timeframe: Timeframe
    start: datetime
    end: datetime
    price: Decimal

    def __len__(self) -> int:
        return _periods(self.timeframe, self.start, self.end)

    def bars(self) -> Iterator[OHLCV]:
        at = self.start
        if self.timeframe.is_monthly:  # months have no fixed step
            while at < self.end:
                yield OHLCV.flat(self.exchange, self.symbol, self.timeframe, at, self.price)
                at = self.timeframe.end_of(at)
            return
        step = timedelta(seconds=self.timeframe.seconds)
        while at < self.end:
            yield OHLCV.flat(self.exchange, self.symbol, self.timeframe, at, self.price)
            at += step


_Part = tuple[OHLCV, ...] | FlatRun


@dataclass(frozen=True, slots=True)
class BarUpdate:
    """What one trade (or tick) closed: per timeframe, the bar that had trades and then the
    empty intervals after it. `bars()` makes them, in the order of their end time across
    timeframes; `count` says how many there are without making them."""

    parts: tuple[tuple[_Part, ...], ...] = ()
    late: bool = False

    @property
    def count(self) -> int:
        return sum(len(part) for parts in self.parts for part in parts)

    def bars(self) -> Iterator[OHLCV]:
        streams = [
            chain.from_iterable(p.bars() if isinstance(p, FlatRun) else p for p in parts)
            for parts in self.parts
            if parts
        ]
        if len(streams) == 1:
            return streams[0]
        return heapq.merge(*streams, key=bar_end)


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


class BarBuilder:
    """Builds one timeframe's bars for one symbol. Pure: no clock, time comes as arguments."""

    def __init__(self, exchange: Exchange, symbol: Symbol, timeframe: Timeframe) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.timeframe = timeframe
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
        self._closed_until = bar_end(bar)
        self._last_close = bar.close

    def is_late(self, trade: Trade) -> bool:
        closed_until = self.closed_until
        return closed_until is not None and trade.timestamp < closed_until

    def add(self, trade: Trade) -> BarUpdate:
        if self.is_late(trade):
            self.late_trades += 1
            return BarUpdate(late=True)
        start = bucket_start(trade.timestamp, self.timeframe)
        parts: list[_Part] = []
        if self._open is not None and start > self._open.start:
            parts.append((self._close_open_bar(),))
        if self._open is None:
            run = self._flat_run(until=start)
            if run is not None:
                parts.append(run)
            price, at = trade.price, trade.timestamp
            self._open = _OpenBar(start, price, price, price, price, ZERO, at, at)
        bar = self._open
        if trade.price > bar.high:
            bar.high = trade.price
        if trade.price < bar.low:
            bar.low = trade.price
        if trade.timestamp >= bar.last_at:
            bar.close, bar.last_at = trade.price, trade.timestamp
        if trade.timestamp < bar.first_at:
            bar.open, bar.first_at = trade.price, trade.timestamp
        with money_context():
            bar.volume += trade.size
        return BarUpdate((tuple(parts),))

    def tick(self, now: datetime) -> BarUpdate:
        """Close what `now` has passed: the open bar if it ended, then empty intervals."""
        parts: list[_Part] = []
        if self._open is not None and self.timeframe.end_of(self._open.start) <= now:
            parts.append((self._close_open_bar(),))
        if self._open is None and self._closed_until is not None:
            run = self._flat_run(until=bucket_start(now, self.timeframe))
            if run is not None:
                parts.append(run)
        return BarUpdate((tuple(parts),))

    def close(self) -> BarUpdate:
        """The data ends here (end of a replay): close the open bar, invent nothing after it."""
        if self._open is None:
            return BarUpdate(((),))
        return BarUpdate((((self._close_open_bar(),),),))

    def _close_open_bar(self) -> OHLCV:
        bar = self._open
        assert bar is not None
        self._open = None
        self._closed_until = self.timeframe.end_of(bar.start)
        self._last_close = bar.close
        return OHLCV(
            self.exchange,
            self.symbol,
            self.timeframe,
            bar.start,
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            bar.volume,
        )

    def _flat_run(self, until: datetime) -> FlatRun | None:
        """The empty intervals up to `until`, as a run: the builder moves past them now, the
        caller makes the bars when it iterates."""
        if self._closed_until is None or self._last_close is None or self._closed_until >= until:
            return None
        run = FlatRun(
            self.exchange, self.symbol, self.timeframe, self._closed_until, until, self._last_close
        )
        self._closed_until = until
        return run


class MultiTimeframeBars:
    """All configured timeframes of one symbol, fed the same trades."""

    def __init__(self, exchange: Exchange, symbol: Symbol, timeframes: Iterable[Timeframe]) -> None:
        self.builders = {tf: BarBuilder(exchange, symbol, tf) for tf in timeframes}
        if not self.builders:
            raise ValueError("at least one timeframe is needed")
        self.late_trades = 0

    def is_late(self, trade: Trade) -> bool:
        return any(builder.is_late(trade) for builder in self.builders.values())

    def add(self, trade: Trade) -> BarUpdate:
        """A trade late for any timeframe is late for all: merging it into the longer bars
        only would make the timeframes disagree about the same trades."""
        if self.is_late(trade):
            self.late_trades += 1
            return BarUpdate(late=True)
        return _joined(builder.add(trade) for builder in self.builders.values())

    def tick(self, now: datetime) -> BarUpdate:
        return _joined(builder.tick(now) for builder in self.builders.values())

    def close(self) -> BarUpdate:
        return _joined(builder.close() for builder in self.builders.values())

    @property
    def closed_until(self) -> datetime | None:
        """A trade before this time is fully accounted for in every timeframe."""
        ends = [b.closed_until for b in self.builders.values()]
        if any(end is None for end in ends):
            return None
        return min(end for end in ends if end is not None)


def _joined(updates: Iterable[BarUpdate]) -> BarUpdate:
    return BarUpdate(tuple(parts for update in updates for parts in update.parts))
