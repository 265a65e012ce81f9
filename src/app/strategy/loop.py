"""The Strategy module's loop: market entries → bars → indicators → strategy → signals.

Exactly-once, without distributed transactions:
* a trade's entry is acknowledged only when every bar it belongs to (in every timeframe) is
  closed and stored, so every trade at or after the last stored bars is still pending;
* closed bars are decided on first, their signals stored and published, and only then the
  bars stored: a crash before the bars are stored makes the restart rebuild and decide them
  again (the signal's id is derived from its bar: the table keeps one row per id and the
  publisher one stream entry per id), a crash after finds the signals already out;
* on start, each symbol resumes at the end of its stored bars (the earliest end across the
  timeframes, which nest, so no stored bar straddles it), the strategy warmed up on the stored
  bars before it, and the pending entries rebuild exactly the open bars; pending trades
  before that point are in stored bars already (or were late): acknowledged, not merged.

Time: bars close when a later trade arrives or, when trading goes quiet, when the *feed's*
clock (`FeedClock`: the latest exchange time seen plus the wall time since that trade entered
its stream) passes their end plus a grace. Never the host's clock, so a replay of any age at
any speed closes bars exactly as its trades say, and a host clock off by a minute changes
nothing. The clock closes bars only after a read that drained the streams: after a restart
(or while falling behind) the backlog is read first, so no trade is late because the engine
was down or slow.

Work per step is bounded: empty intervals come out of the bar builders as runs, made into
bars and stored in chunks; between chunks the loop looks at its stop flag, so a trade stamped
a year after the previous one on 1s bars costs memory for one chunk, and a stop is honoured
within a chunk's time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from trading_engine.app.runtime.log_events import log_event
from trading_engine.domain.bars import BarUpdate, MultiTimeframeBars, bar_end
from trading_engine.domain.feed_clock import FeedClock
from trading_engine.domain.market import Trade
from trading_engine.domain.models import OHLCV, Signal
from trading_engine.domain.values import Exchange, Symbol, Timeframe
from trading_engine.ports.clock import Clock
from trading_engine.ports.market_data import MarketDataSource, MarketEntry
from trading_engine.ports.repositories import BarRepository, SignalRepository
from trading_engine.ports.signal_bus import SignalPublisher
from trading_engine.ports.strategy import Strategy

log = logging.getLogger("trading_engine.strategy")

StrategyFactory = Callable[[Exchange, Symbol], Strategy]

# Bars made, decided on and stored per transaction when a gap is long: bounds the memory of
# a long quiet stretch and how long a stop waits.
CHUNK_BARS = 5_000


@dataclass
class StrategyStats:
    entries: int = 0
    trades: int = 0
    other_events: int = 0
    late_trades: int = 0  # for a bar already closed: counted, acknowledged, never merged
    future_trades: int = 0  # stamped further ahead of the host's clock than the tolerance
    settled_on_recovery: int = 0  # pending at a restart, but before the stored bars
    other_symbols: int = 0  # trades of symbols not traded here (a shared feed): skipped
    bars_closed: int = 0
    signals_new: int = 0
    signals_seen_before: int = 0
    signals_published: int = 0
    acknowledged: int = 0
    recovered: int = 0
    signals: list[Signal] = field(default_factory=list, repr=False)


@dataclass
class _SymbolState:
    bars: MultiTimeframeBars
    strategy: Strategy
    last_entry: str | None = None  # the market entry of the last trade added


@dataclass(frozen=True, slots=True)
class _Closing:
    """What closed some bars: the market entry of the last trade in them (None: from a bar
    file, or resumed from the store with no trade of it read since), and how long ago, on the
    feed's clock, they closed when the engine closed them at wall time `wall` (`age`: how far
    behind the market the engine was, since they closed at the time of the trade after them
    or by the feed's clock on silence; None: not known). A signal decided on them is as old
    as that plus the wall time since, however long the rest of the batch takes."""

    last_entry: str | None
    age: timedelta | None
    wall: float

    def age_at(self, wall: float) -> timedelta | None:
        return None if self.age is None else self.age + timedelta(seconds=wall - self.wall)


_Closed = tuple[OHLCV, _Closing]


class _Interrupted(Exception):
    """A stop asked for between two chunks of a long stretch of bars."""


@dataclass
class _Refused:
    """Trades of one batch not merged into bars, for one log line per kind and batch."""

    count: int = 0
    first: str = ""
    last: str = ""

    def note(self, entry: MarketEntry, trade: Trade) -> None:
        text = f"{entry.entry_id} {trade.symbol} {trade.price} at {trade.timestamp.isoformat()}"
        self.count += 1
        self.first = self.first or text
        self.last = text


class StrategyLoop:
    def __init__(
        self,
        source: MarketDataSource,
        bars: BarRepository,
        signals: SignalRepository,
        publisher: SignalPublisher,
        make_strategy: StrategyFactory,
        timeframes: Sequence[Timeframe],
        strategy_timeframe: Timeframe,
        clock: Clock,
        *,
        batch_size: int = 500,
        block_ms: int = 1000,
        tick_grace: timedelta | None = timedelta(seconds=2),
        keep_signals: bool = False,
        symbols: Sequence[str] | None = None,
        future_tolerance: timedelta | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        chunk_bars: int = CHUNK_BARS,
    ) -> None:
        if strategy_timeframe not in timeframes:
            raise ValueError(f"strategy timeframe {strategy_timeframe} is not built: {timeframes}")
        self.source, self.bar_store, self.signal_store = source, bars, signals
        self.publisher, self.make_strategy = publisher, make_strategy
        self.timeframes, self.strategy_timeframe = tuple(timeframes), strategy_timeframe
        self.clock, self.batch_size, self.block_ms = clock, batch_size, block_ms
        # None: bars close on later trades only (a replay that ends with `run_to_end`).
        self.tick_grace, self.keep_signals = tick_grace, keep_signals
        # A trade stamped further ahead of the host's clock is refused (None: no check).
        self.future_tolerance = future_tolerance
        self.monotonic, self.chunk_bars = monotonic, chunk_bars
        # Only these symbols get bars and signals (None: every symbol on the streams).
        self.symbols = None if symbols is None else frozenset(Symbol(s) for s in symbols)
        self.stats = StrategyStats()
        self.feed = FeedClock()
        self._symbols: dict[tuple[Exchange, Symbol], _SymbolState] = {}
        self._pending: list[MarketEntry] = []  # delivered, in open bars, not yet acknowledged
        self._closed: list[_Closed] = []  # closed, not yet decided on and stored
        self._unstored: list[OHLCV] = []  # from `on_bars`: decided on, stored in chunks
        self._started = False
        # Looked at between two chunks of a long stretch of bars (`run` sets it).
        self.should_stop: Callable[[], bool] = lambda: False
        # Shown every trade as it is read (a simulated exchange paper-trading on this feed).
        self.market_observers: list[Callable[[Trade], None]] = []

    # ----- life cycle -----------------------------------------------------------------------

    def start(self, should_stop: Callable[[], bool] | None = None) -> int:
        """Take up the entries a previous run left unacknowledged: they rebuild its open bars
        (each symbol resumes after its stored bars when its first trade comes). A stop asked
        for while they rebuild a long gap comes between two chunks."""
        if should_stop is not None:
            self.should_stop = should_stop
        recovered = list(self.source.recover())
        self.stats.recovered += len(recovered)
        self._started = True
        try:
            self._process(recovered, recovering=True)
        except _Interrupted:
            self._interrupted()
        if recovered:
            log.info("recovered %d pending entries", len(recovered))
        return len(recovered)

    def reset(self) -> None:
        """Forget the in-memory state, as a new process would start: the next `start()`
        recovers the unacknowledged entries and rebuilds the open bars from them."""
        self._symbols.clear()
        self._pending = []
        self._closed = []
        self._started = False

    def step(self) -> int:
        """Read and process one batch. Returns the number of entries read."""
        if not self._started:
            self.start()
            if not self._started:  # stopped while the start rebuilt a long gap
                return 0
        entries = self.source.read(self.batch_size, self.block_ms)
        # Fewer than asked for: the streams were drained when this read returned, so the feed's
        # clock as it was then may close bars (not as it is after processing them: trades that
        # arrive meanwhile are not read yet).
        drained_at = self.monotonic() if len(entries) < self.batch_size else None
        self._process(entries, drained_at=drained_at)
        return len(entries)

    def run(self, should_stop: Callable[[], bool]) -> StrategyStats:
        """Until `should_stop()`: the batch in hand is finished and acknowledged, except in a
        long stretch of bars, where the stop comes between two stored chunks (what was not
        acknowledged is taken up by the next start)."""
        self.should_stop = should_stop
        try:
            if not self._started and not should_stop():
                self.start()
            while not should_stop():
                self.step()
        except _Interrupted:
            self._interrupted()
        return self.stats

    def _interrupted(self) -> None:
        """Nothing of the interrupted batch is acknowledged: the next start takes it up."""
        log.info("stopped between two chunks of bars; the next start continues from there")
        self.reset()

    def run_to_end(self) -> StrategyStats:
        """A finite replay: read until the source is empty, then close the bars still open
        (the data ends there; no flat bars are invented past it) and act on them."""
        if not self._started:
            self.start()
        while self.step():
            pass
        for state in self._symbols.values():
            self._take(state.bars.close(), self._closing(state.last_entry))  # data's end
        self._store_closed()
        self._ack_settled([])
        return self.stats

    # ----- processing -----------------------------------------------------------------------

    def _process(
        self,
        entries: Iterable[MarketEntry],
        *,
        recovering: bool = False,
        drained_at: float | None = None,
    ) -> None:
        settled: list[MarketEntry] = []
        late, future = _Refused(), _Refused()
        horizon = (
            None if self.future_tolerance is None else self.clock.now() + self.future_tolerance
        )
        for entry in entries:
            self.stats.entries += 1
            event = entry.event
            if not isinstance(event, Trade):
                self.stats.other_events += 1  # tickers / books change no stored state here
                settled.append(entry)
                continue
            if self.symbols is not None and event.symbol not in self.symbols:
                self.stats.other_symbols += 1
                settled.append(entry)
                continue
            if horizon is not None and event.timestamp > horizon:
                self.stats.future_trades += 1  # would drag the feed's clock into the future
                future.note(entry, event)
                settled.append(entry)
                continue
            self.stats.trades += 1
            for observe in self.market_observers:
                observe(event)
            entered = entry.entered_at if entry.entered_at is not None else self.monotonic()
            self.feed.observe(event.timestamp, entered)
            key = (event.exchange, event.symbol)
            state = self._symbols.get(key) or self._open_symbol(*key)
            update = state.bars.add(event)
            if update.late:
                if recovering:
                    self.stats.settled_on_recovery += 1
                else:
                    self.stats.late_trades += 1
                    late.note(entry, event)
                settled.append(entry)
                continue
            if update.count:  # the bars this trade closed ended with the previous trade
                self._take(update, self._closing(state.last_entry, event.timestamp))
            state.last_entry = entry.entry_id
            self._pending.append(entry)
        if drained_at is not None and self.tick_grace is not None:
            now = self.feed.now(drained_at)
            if now is not None:
                for state in self._symbols.values():
                    closing = self._closing(state.last_entry)
                    self._take(state.bars.tick(now - self.tick_grace), closing)
        self._store_closed()
        self._ack_settled(settled)
        if late.count:
            log.warning(
                "%d late trades counted, not merged (their bars are closed): first %s, last %s",
                late.count,
                late.first,
                late.last,
            )
        if future.count:
            log.warning(
                "%d trades refused, stamped more than %s ahead of this host's clock: "
                "first %s, last %s",
                future.count,
                self.future_tolerance,
                future.first,
                future.last,
            )

    def on_bars(self, closed: Sequence[OHLCV]) -> None:
        """Bars that arrive closed (bar files in a backtest): stored and decided on exactly
        as the bars this loop builds from trades."""
        for bar in closed:
            if (bar.exchange, bar.symbol) not in self._symbols:
                self._open_symbol(bar.exchange, bar.symbol)
        closing = _Closing(None, None, self.monotonic())
        self._closed.extend((bar, closing) for bar in closed)
        self._store_closed(defer_bars=True)

    def flush_bars(self) -> None:
        """Store the bars `on_bars` decided on and holds back (it stores them `chunk_bars` at a
        time: they are already in the file they came from, and one transaction per bar was
        half a backtest's time). A backtest calls this at its end."""
        unstored, self._unstored = self._unstored, []
        if unstored:
            self.bar_store.upsert(unstored)

    def _closing(self, last_entry: str | None, closed_at: datetime | None = None) -> _Closing:
        """Closed now: by a trade stamped `closed_at`, else by the feed's clock."""
        wall = self.monotonic()
        feed_time = self.feed.now(wall)
        age = None if feed_time is None else feed_time - (closed_at or feed_time)
        return _Closing(last_entry, age, wall)

    def _take(self, update: BarUpdate, closing: _Closing) -> None:
        """Collect closed bars; a long run of them is decided on and stored chunk by chunk,
        cut only between bars of different end times, so every store holds all the bars
        (of every timeframe) that end by some moment."""
        for bar in update.bars():
            closed = self._closed  # (a new list after each store)
            if len(closed) >= self.chunk_bars and bar_end(bar) > bar_end(closed[-1][0]):
                self._store_closed()
                if self.should_stop():
                    raise _Interrupted
            self._closed.append((bar, closing))

    def _store_closed(self, *, defer_bars: bool = False) -> None:
        """Decide on the closed bars, store and publish the signals, then store the bars
        (`defer_bars`: hold them back for `flush_bars`, up to `chunk_bars` of them)."""
        closed, self._closed = self._closed, []
        if not closed:
            return
        decided: list[tuple[Signal, OHLCV, _Closing]] = []
        for bar, closing in closed:
            if bar.timeframe != self.strategy_timeframe:
                continue
            strategy = self._symbols[(bar.exchange, bar.symbol)].strategy
            signal = strategy.decide(bar, strategy.calculate_indicators(bar))
            if signal is not None:
                decided.append((signal, bar, closing))
        for signal, bar, closing in decided:
            self._store_and_publish(signal, bar, closing)
        self.stats.bars_closed += len(closed)
        if defer_bars:
            self._unstored.extend(bar for bar, _ in closed)
            if len(self._unstored) >= self.chunk_bars:
                self.flush_bars()
            return
        self.bar_store.upsert([bar for bar, _ in closed])

    def _store_and_publish(self, signal: Signal, bar: OHLCV, closing: _Closing) -> None:
        if self.signal_store.add(signal):
            self.stats.signals_new += 1
            log_event(
                log,
                "signal",
                "signal %s %s %s at %s",
                signal.action,
                signal.symbol,
                signal.signal_id,
                bar.timestamp,
                correlation_id=signal.signal_id,
                market_entry=closing.last_entry,  # the last trade of the bar decided on
                bar=bar.timestamp.isoformat(),
                timeframe=str(bar.timeframe),
                action=str(signal.action),
                symbol=str(signal.symbol),
                price_ref=str(signal.price_ref),
                strategy=signal.strategy,
            )
        else:
            self.stats.signals_seen_before += 1
        # How long ago its bar closed (feed clock): the execution judges the age by it.
        if self.publisher.publish(signal, age=closing.age_at(self.monotonic())):
            self.stats.signals_published += 1
        if self.keep_signals:
            self.stats.signals.append(signal)

    def _ack_settled(self, settled: list[MarketEntry]) -> None:
        still_open: list[MarketEntry] = []
        for entry in self._pending:
            event = entry.event
            assert isinstance(event, Trade)
            closed_until = self._symbols[(event.exchange, event.symbol)].bars.closed_until
            if closed_until is not None and event.timestamp < closed_until:
                settled.append(entry)
            else:
                still_open.append(entry)
        self._pending = still_open
        if settled:
            self.source.ack(settled)
            self.stats.acknowledged += len(settled)

    # ----- per-symbol state -----------------------------------------------------------------

    def _open_symbol(self, exchange: Exchange, symbol: Symbol) -> _SymbolState:
        """Builders continue after the stored bars; the strategy is warmed up on them."""
        bars = MultiTimeframeBars(exchange, symbol, self.timeframes)
        strategy = self.make_strategy(exchange, symbol)
        resume = self._resume_point(exchange, symbol)
        if resume is not None:
            for timeframe, builder in bars.builders.items():
                limit = strategy.warmup_bars if timeframe == self.strategy_timeframe else 1
                stored = self.bar_store.recent(exchange, symbol, timeframe, resume, max(limit, 1))
                if stored:
                    builder.resume_after(stored[-1])
                if timeframe == self.strategy_timeframe:
                    for bar in stored:  # rebuild indicator state; these decisions were made
                        strategy.decide(bar, strategy.calculate_indicators(bar))
        state = _SymbolState(bars, strategy)
        self._symbols[(exchange, symbol)] = state
        return state

    def _resume_point(self, exchange: Exchange, symbol: Symbol) -> datetime | None:
        """Where the stored bars end, the earliest across timeframes; None if a timeframe has
        none yet (its first bar is still open, so every trade of the symbol is pending)."""
        ends = []
        for timeframe in self.timeframes:
            latest = self.bar_store.recent(exchange, symbol, timeframe, None, 1)
            if not latest:
                return None
            ends.append(bar_end(latest[-1]))
        return min(ends)

    @property
    def pending_entries(self) -> int:
        return len(self._pending)

    @property
    def dead_letters(self) -> dict[str, int]:
        """Malformed market entries set aside, by reason."""
        return dict(self.source.stats.dead_letter_reasons)

    def report(self) -> dict[str, object]:
        """The counters, for the stop report: what was read, refused (and why), stored."""
        counters = {k: v for k, v in vars(self.stats).items() if k != "signals"}
        return {**counters, "dead_letters": self.dead_letters}
