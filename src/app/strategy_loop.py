"""The Strategy module's loop: market entries → bars → indicators → strategy → signals.

Exactly-once, without distributed transactions:
* a trade's entry is acknowledged only when every bar it belongs to (in every timeframe) is
  closed and stored, so after a crash the pending entries rebuild exactly the open bars;
* closed bars are upserted (a replay writes the same rows again);
* a signal's id is derived from its bar, the store keeps one row per id and the publisher
  one stream entry per id, and the signal is published again after a restart if the crash
  came between storing and publishing (the publisher ignores it if it got there).
On start, each symbol's builders resume after the last stored bar before the first pending
trade, and the strategy is warmed up on the stored bars before it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.log_events import log_event
from domain.bars import MultiTimeframeBars, bucket_start
from domain.market import Trade
from domain.models import OHLCV, Signal
from domain.values import Exchange, Symbol, Timeframe
from ports.clock import Clock
from ports.market_data import MarketDataSource, MarketEntry
from ports.repositories import BarRepository, SignalRepository
from ports.signal_bus import SignalPublisher
from ports.strategy import Strategy

log = logging.getLogger("trading_engine.strategy")

StrategyFactory = Callable[[Exchange, Symbol], Strategy]


@dataclass
class StrategyStats:
    entries: int = 0
    trades: int = 0
    other_events: int = 0
    late_trades: int = 0
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


# A closed bar and the market entry of its last trade (None: from a bar file, or resumed
# from the store after a restart with no trade of it read since).
_Closed = tuple[OHLCV, str | None]


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
    ) -> None:
        if strategy_timeframe not in timeframes:
            raise ValueError(f"strategy timeframe {strategy_timeframe} is not built: {timeframes}")
        self.source, self.bar_store, self.signal_store = source, bars, signals
        self.publisher, self.make_strategy = publisher, make_strategy
        self.timeframes, self.strategy_timeframe = tuple(timeframes), strategy_timeframe
        self.clock, self.batch_size, self.block_ms = clock, batch_size, block_ms
        self.tick_grace, self.keep_signals = tick_grace, keep_signals
        # Only these symbols get bars and signals (None: every symbol on the streams).
        self.symbols = None if symbols is None else frozenset(Symbol(s) for s in symbols)
        self.stats = StrategyStats()
        self._symbols: dict[tuple[Exchange, Symbol], _SymbolState] = {}
        self._pending: list[MarketEntry] = []  # delivered, in open bars, not yet acknowledged
        self._started = False
        # Shown every trade as it is read (a simulated exchange paper-trading on this feed).
        self.market_observers: list[Callable[[Trade], None]] = []

    # ----- life cycle -----------------------------------------------------------------------

    def start(self) -> int:
        """Recover entries a previous run left unacknowledged and rebuild its open bars."""
        recovered = list(self.source.recover())
        self.stats.recovered += len(recovered)
        first_pending: dict[tuple[Exchange, Symbol], datetime] = {}
        for entry in recovered:
            if isinstance(entry.event, Trade):
                key = (entry.event.exchange, entry.event.symbol)
                when = entry.event.timestamp
                first_pending[key] = min(when, first_pending.get(key, when))
        for key, when in first_pending.items():
            self._open_symbol(*key, resume_before=when)
        self._started = True
        self._process(recovered)
        if recovered:
            log.info("recovered %d pending entries", len(recovered))
        return len(recovered)

    def reset(self) -> None:
        """Forget the in-memory state, as a new process would start: the next `start()`
        recovers the unacknowledged entries and rebuilds the open bars from them."""
        self._symbols.clear()
        self._pending = []
        self._started = False

    def step(self) -> int:
        """Read and process one batch. Returns the number of entries read."""
        if not self._started:
            self.start()
        entries = self.source.read(self.batch_size, self.block_ms)
        self._process(entries)
        return len(entries)

    def run(self, should_stop: Callable[[], bool]) -> StrategyStats:
        """Until `should_stop()`: the batch in hand is always finished and acknowledged."""
        if not self._started:
            self.start()
        while not should_stop():
            self.step()
        return self.stats

    def run_to_end(self) -> StrategyStats:
        """A finite replay: read until the source is empty, then close the bars still open
        (the data ends there; no flat bars are invented past it) and act on them."""
        if not self._started:
            self.start()
        while self.step():
            pass
        closed = [
            (bar, state.last_entry)
            for state in self._symbols.values()
            for bar in state.bars.close()
        ]
        self._store_and_decide(closed)
        self._ack_settled([])
        return self.stats

    def flush(self, now: datetime) -> None:
        """Close every bar that `now` has passed (end of a replay) and act on them."""
        closed = [
            (bar, state.last_entry)
            for state in self._symbols.values()
            for bar in state.bars.tick(now)
        ]
        self._store_and_decide(closed)
        self._ack_settled([])

    # ----- processing -----------------------------------------------------------------------

    def _process(self, entries: Iterable[MarketEntry]) -> None:
        closed: list[_Closed] = []
        settled: list[MarketEntry] = []
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
            self.stats.trades += 1
            for observe in self.market_observers:
                observe(event)
            state = self._symbols.get((event.exchange, event.symbol)) or self._open_symbol(
                event.exchange, event.symbol, resume_before=None
            )
            update = state.bars.add(event)
            # The bars this trade closed ended with the symbol's previous trade.
            closed.extend((bar, state.last_entry) for bar in update.closed)
            if update.late:
                self.stats.late_trades += 1
                log.warning(
                    "late trade counted, not merged (its bar is closed): %s %s %s at %s",
                    entry.entry_id,
                    event.symbol,
                    event.price,
                    event.timestamp,
                )
                settled.append(entry)
                continue
            state.last_entry = entry.entry_id
            self._pending.append(entry)
        if self.tick_grace is not None:
            now = self.clock.now() - self.tick_grace
            for state in self._symbols.values():
                closed.extend((bar, state.last_entry) for bar in state.bars.tick(now))
        self._store_and_decide(closed)
        self._ack_settled(settled)

    def on_bars(self, closed: Sequence[OHLCV]) -> None:
        """Bars that arrive closed (bar files in a backtest): stored and decided on exactly
        as the bars this loop builds from trades."""
        for bar in closed:
            if (bar.exchange, bar.symbol) not in self._symbols:
                self._open_symbol(bar.exchange, bar.symbol, bar.timestamp)
        self._store_and_decide([(bar, None) for bar in closed])

    def _store_and_decide(self, closed: Sequence[_Closed]) -> None:
        if not closed:
            return
        self.bar_store.upsert([bar for bar, _ in closed])
        self.stats.bars_closed += len(closed)
        for bar, last_entry in closed:
            if bar.timeframe != self.strategy_timeframe:
                continue
            strategy = self._symbols[(bar.exchange, bar.symbol)].strategy
            signal = strategy.decide(bar, strategy.calculate_indicators(bar))
            if signal is None:
                continue
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
                    market_entry=last_entry,  # the last trade of the bar decided on
                    bar=bar.timestamp.isoformat(),
                    timeframe=str(bar.timeframe),
                    action=str(signal.action),
                    symbol=str(signal.symbol),
                    price_ref=str(signal.price_ref),
                    strategy=signal.strategy,
                )
            else:
                self.stats.signals_seen_before += 1
            if self.publisher.publish(signal):
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

    def _open_symbol(
        self, exchange: Exchange, symbol: Symbol, resume_before: datetime | None
    ) -> _SymbolState:
        """Builders continue after the stored bars; the strategy is warmed up on them."""
        bars = MultiTimeframeBars(exchange, symbol, self.timeframes)
        strategy = self.make_strategy(exchange, symbol)
        for timeframe, builder in bars.builders.items():
            before = None if resume_before is None else bucket_start(resume_before, timeframe)
            limit = strategy.warmup_bars if timeframe == self.strategy_timeframe else 1
            stored = self.bar_store.recent(exchange, symbol, timeframe, before, max(limit, 1))
            if stored:
                builder.resume_after(stored[-1])
            if timeframe == self.strategy_timeframe:
                for bar in stored:  # rebuild indicator state; these decisions were made before
                    strategy.decide(bar, strategy.calculate_indicators(bar))
        state = _SymbolState(bars, strategy)
        self._symbols[(exchange, symbol)] = state
        return state

    @property
    def pending_entries(self) -> int:
        return len(self._pending)
