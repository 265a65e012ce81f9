"""A backtest: the live strategy and execution loops, driven bar by bar over past data.

Nothing here trades differently from production: the StrategyLoop decides on each closed bar
and publishes its signals; the ExecutionLoop reads them, applies risk and sizing, records the
decision and the orders in the event store and places them on the (simulated) exchange; the
order monitor records the fills into orders and positions. Only the adapters differ, and the
order in which this driver lets time pass:

    for each bar time t:  signals decided at bar closes up to t are released to the bus
                          → execution handles them, sizing at the bar's open
                          → the exchange is shown the bar: market orders fill at its open
                          → the monitor records the fills
                          → the strategy is shown the bar (closed at t + timeframe)
                          → equity is marked at the bar's close

so an order never fills at a price seen before the signal that caused it (no look-ahead),
and the default fill rule is "next bar's open", as in backtesting.py.
"""

from __future__ import annotations

import gc
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from itertools import groupby
from typing import Any, Protocol

from trading_engine.app.backtest.results import BacktestResult, ClosedTrade, EquityPoint, OpenTrade
from trading_engine.app.execution.loop import ExecutionLoop
from trading_engine.app.strategy.loop import StrategyLoop
from trading_engine.domain.market import Trade
from trading_engine.domain.models import OHLCV, Signal, signal_id_for
from trading_engine.domain.position import Position, position_id_for
from trading_engine.domain.values import ZERO, Side, SignalAction, money_context
from trading_engine.ports.broker import MarketSimulator
from trading_engine.ports.event_store import EventStore
from trading_engine.ports.repositories import SignalRepository
from trading_engine.ports.signal_bus import SignalPublisher

# backtesting.py's default `size`: "all available equity", as a fraction just below 1
ALL_IN = Decimal(1) - Decimal(sys.float_info.epsilon)

Progress = Callable[[int, int], None]  # (bars done, bars in all)


@contextmanager
def fewer_collections(threshold: int = 50_000) -> Iterator[None]:
    """A run allocates millions of objects that live to its end (bars, events, Decimals): the
    cyclic collector's default pace (every 700 allocations) scanned them again and again, a
    tenth of a run's time. Everything allocated before the run is left out of its scans
    (`gc.freeze`), and it runs every `threshold` allocations until the run ends."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(threshold, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


class SettableClock(Protocol):
    def now(self) -> datetime: ...

    def set(self, to: datetime) -> None: ...


class HeldSignals:
    """The strategy's publisher in a backtest: holds each signal until the driver's time
    reaches the moment it was decided (its bar's close), then puts it on the bus."""

    def __init__(self, bus: SignalPublisher) -> None:
        self._bus = bus
        self._held: list[Signal] = []

    def publish(self, signal: Signal, age: timedelta | None = None) -> bool:
        self._held.append(signal)
        return True

    def publish_now(self, signal: Signal) -> None:
        """A signal that does not wait for a bar's close (the out-of-money liquidation)."""
        self._bus.publish(signal)

    def release(self, until: datetime) -> int:
        due = [s for s in self._held if s.timestamp <= until]
        if due:
            self._held = [s for s in self._held if s.timestamp > until]
            for signal in due:
                self._bus.publish(signal)
        return len(due)


class SignalsKeptUntilEnd:
    """The strategy's signal table in a backtest: the run is the only writer of its tables,
    so its signals are kept here and written together when it ends (`flush`), not in a
    transaction and a disk flush each (a third of a 20,000-bar run's time). The log has
    every decision meanwhile; `get` answers from both."""

    def __init__(self, table: SignalRepository) -> None:
        self._table = table
        self._kept: dict[str, Signal] = {}

    def add(self, signal: Signal) -> bool:
        if signal.signal_id in self._kept or self._table.get(signal.signal_id) is not None:
            return False
        self._kept[signal.signal_id] = signal
        return True

    def add_many(self, signals: Sequence[Signal]) -> None:
        for signal in signals:
            self.add(signal)

    def get(self, signal_id: str) -> Signal | None:
        return self._kept.get(signal_id) or self._table.get(signal_id)

    def flush(self) -> None:
        kept, self._kept = list(self._kept.values()), {}
        self._table.add_many(kept)


class Marks:
    """The price each symbol would trade at now (the current bar's open while orders are
    being decided), for sizing."""

    def __init__(self) -> None:
        self.prices: dict[str, Decimal] = {}

    def __call__(self, symbol: str) -> Decimal:
        return self.prices[symbol]


@dataclass(frozen=True, slots=True)
class EquitySizer:
    """backtesting.py's default sizing: a `fraction` of what the account could spend once the
    current position is closed at `price` (cash + realized PnL, less what other open positions
    hold), in whole size steps, at the price the order will pay: `price × (1 ± slippage)`
    plus the commission on `price`."""

    store: EventStore
    exchange: str
    symbols: Sequence[str]
    cash: Decimal
    commission: Decimal
    slippage: Decimal
    fraction: Decimal
    steps: dict[str, Decimal]
    price: Callable[[str], Decimal]

    def __call__(self, signal: Signal, quantity: Decimal) -> Decimal:
        symbol = str(signal.symbol)
        price = self.price(symbol)
        with money_context():
            available = self.cash
            for other in self.symbols:
                position = self.store.find_position(self.exchange, other)
                if position is None:
                    continue
                available += position.realized_pnl
                if position.quantity == ZERO:
                    continue
                if other == symbol:  # closed first, at this price, paying the commission
                    available += position.unrealized_pnl(price)
                    available -= price * position.size * self.commission
                else:
                    available -= position.entry_cost + position.entry_fees
            buying = signal.action.value == "enter_long"
            slip = Decimal(1) + self.slippage if buying else Decimal(1) - self.slippage
            unit = price * slip + price * self.commission
            step = self.steps[symbol]
            size = (available * self.fraction / unit / step).to_integral_value(ROUND_FLOOR)
            return max(size * step, ZERO)


class BarBacktest:
    def __init__(
        self,
        bars: dict[str, list[OHLCV]],
        *,
        strategy: StrategyLoop,
        held: HeldSignals,
        execution: ExecutionLoop,
        market: MarketSimulator,
        clock: SettableClock,
        store: EventStore,
        marks: Marks,
        cash: Decimal,
        exchange: str,
        parameters: dict[str, Any],
    ) -> None:
        self._bars, self._strategy, self._held = bars, strategy, held
        self._execution, self._market, self._clock = execution, market, clock
        self._store, self._marks, self._cash = store, marks, cash
        self._exchange, self._parameters = exchange, parameters

    def run(self, progress: Progress | None = None) -> BacktestResult:
        with fewer_collections():
            return self._run(progress)

    def _run(self, progress: Progress | None) -> BacktestResult:
        timeline = sorted(
            (bar for series in self._bars.values() for bar in series), key=lambda b: b.timestamp
        )
        equity: list[EquityPoint] = []
        positions: dict[str, Position] = {}
        seen_log = self._store.max_position()
        self._market.open_private_stream()
        self._execution.start()
        done = 0
        for moment, group in groupby(timeline, key=lambda b: b.timestamp):
            bars = list(group)
            self._clock.set(moment)
            for bar in bars:
                self._marks.prices[str(bar.symbol)] = bar.open
            if self._held.release(until=moment):  # the bus holds nothing else
                while self._execution.step(block_ms=0):
                    pass
            for bar in bars:
                self._market.observe_bar(bar)
            if self._execution.live_orders:  # the exchange pushes its fills: no poll
                self._execution.record_pushed(self._market.take_private_events())
                seen_log = refresh_positions(
                    self._store, self._exchange, list(self._bars), positions, seen_log
                )
            self._strategy.on_bars(bars)
            for bar in bars:
                self._marks.prices[str(bar.symbol)] = bar.close
            equity.append(self._mark(moment, positions))
            done += len(bars)
            if equity[-1].equity <= ZERO and equity[-1].exposed:
                out_of_money(self._held, self._execution, self._market, bars, positions)
                # (-1: no log head to compare with, reload the positions as they now are)
                refresh_positions(self._store, self._exchange, list(self._bars), positions, -1)
                later = sorted({bar.timestamp for bar in timeline[done:]})
                equity[-1:] = [EquityPoint(t, ZERO, False) for t in [moment, *later]]
                self._parameters["out_of_money_at"] = moment.isoformat()
                done = len(timeline)
            if progress is not None:
                progress(done, len(timeline))
            if done == len(timeline):
                break
        self._strategy.flush_bars()
        index = {
            symbol: {bar.timestamp: n for n, bar in enumerate(series)}
            for symbol, series in self._bars.items()
        }
        closed, still_open = round_trips(
            self._store,
            self._exchange,
            lambda s, t: index.get(s, {}).get(t, -1),
            {symbol: series[-1].close for symbol, series in self._bars.items()},
        )
        return BacktestResult(
            initial_cash=self._cash,
            equity=equity,
            trades=closed,
            fees_paid=sum((p.fees_paid for p in positions.values()), ZERO),
            prices={
                symbol: [(b.timestamp, b.close) for b in series]
                for symbol, series in self._bars.items()
            },
            parameters=self._parameters,
            open_trades=still_open,
            bars=self._bars,
        )

    def _mark(self, moment: datetime, positions: dict[str, Position]) -> EquityPoint:
        return mark(moment, self._cash, positions, self._marks.prices)


OUT_OF_MONEY = "out_of_money"


def out_of_money(
    held: HeldSignals,
    execution: ExecutionLoop,
    market: MarketSimulator,
    bars: Sequence[OHLCV],
    positions: dict[str, Position],
) -> None:
    """Equity at or below zero: every open position is closed at its bar's close and the run
    stops, as backtesting.py does (an account with nothing left cannot keep trading, and
    a curve run past zero would be meaningless). The closes go through the live path: an
    `exit` signal each, decided, sized, ordered and filled like any other, so the log
    shows why the run ended."""
    for bar in bars:
        position = positions.get(str(bar.symbol))
        if position is None or position.quantity == ZERO:
            continue
        held.publish_now(
            Signal(
                signal_id=signal_id_for(OUT_OF_MONEY, {}, bar),
                exchange=bar.exchange,
                symbol=bar.symbol,
                strategy=OUT_OF_MONEY,
                action=SignalAction.EXIT,
                confidence=Decimal(1),
                price_ref=bar.close,
                timestamp=bar.timestamp,
                meta={
                    "reason": "equity at or below zero: positions closed at the bar's close, "
                    "the run stops (as backtesting.py)",
                    "timeframe": str(bar.timeframe),
                },
            )
        )
    while execution.step(block_ms=0):
        pass
    for bar in bars:  # the close as a print the exit orders fill at, whatever the volume
        market.observe_trade(
            Trade(bar.exchange, bar.symbol, Side.BUY, bar.close, LIQUIDITY, bar.timestamp)
        )
    if execution.live_orders:
        execution.record_pushed(market.take_private_events())


LIQUIDITY = Decimal(10) ** 11  # a print large enough for any position (DECIMAL(20,8))


def refresh_positions(
    store: EventStore,
    exchange: str,
    symbols: list[str],
    positions: dict[str, Position],
    seen_log: int,
) -> int:
    """Reload the positions if anything was recorded since `seen_log`; returns the new head."""
    head = store.max_position()
    if head != seen_log:
        for symbol in symbols:
            position = store.find_position(exchange, symbol)
            if position is not None:
                positions[symbol] = position
    return head


def mark(
    moment: datetime, cash: Decimal, positions: dict[str, Position], prices: dict[str, Decimal]
) -> EquityPoint:
    """Equity at `moment`: cash, realized PnL, and open positions valued at `prices`."""
    with money_context():
        value = cash
        exposed = False
        for symbol, position in positions.items():
            value += position.realized_pnl
            if position.quantity != ZERO:
                exposed = True
                value += position.unrealized_pnl(prices[symbol])
    return EquityPoint(moment, value, exposed)


@dataclass
class _Lot:
    side: str
    size: Decimal
    price: Decimal
    fee: Decimal  # the entry fee still attached to `size`
    time: datetime


def round_trips(
    store: EventStore,
    exchange: str,
    bar_of: Callable[[str, datetime], int],
    last_prices: dict[str, Decimal],
) -> tuple[list[ClosedTrade], list[OpenTrade]]:
    """Round trips from the fills of `exchange`'s positions in the symbols of `last_prices`
    (a store may hold several runs, each its own exchange), matched first in, first out per
    symbol (a close filled in parts, or one that also opens the other way, splits
    accordingly), and the lots still open at the end, valued at `last_prices`.
    `bar_of(symbol, time)` numbers the bar a fill happened in."""
    lots: dict[str, list[_Lot]] = defaultdict(list)
    trades: list[ClosedTrade] = []
    fills = (
        (symbol, event)
        for symbol in last_prices
        for event in store.events_of(position_id_for(exchange, symbol))
        if isinstance(event, Position.FillApplied)
    )
    for symbol, event in fills:
        side = "LONG" if event.side == "BUY" else "SHORT"
        size, fee = event.size, event.fee
        with money_context():
            open_lots = lots[symbol]
            while size > ZERO and open_lots and open_lots[0].side != side:
                lot = open_lots[0]
                taken = min(lot.size, size)
                entry_fee = lot.fee * taken / lot.size
                exit_fee = fee * taken / size
                direction = 1 if lot.side == "LONG" else -1
                pnl = (event.price - lot.price) * taken * direction - entry_fee - exit_fee
                trades.append(
                    ClosedTrade(
                        symbol=symbol,
                        side=lot.side,
                        size=taken,
                        entry_time=lot.time,
                        exit_time=event.executed_at,
                        entry_price=lot.price,
                        exit_price=event.price,
                        pnl=pnl,
                        fees=entry_fee + exit_fee,
                        entry_bar=bar_of(symbol, lot.time),
                        exit_bar=bar_of(symbol, event.executed_at),
                    )
                )
                lot.fee -= entry_fee
                lot.size -= taken
                fee -= exit_fee
                size -= taken
                if lot.size == ZERO:
                    open_lots.pop(0)
            if size > ZERO:
                open_lots.append(_Lot(side, size, event.price, fee, event.executed_at))
    return trades, [
        _open_trade(symbol, lot, bar_of(symbol, lot.time), last_prices[symbol])
        for symbol, symbol_lots in lots.items()
        for lot in symbol_lots
    ]


def _open_trade(symbol: str, lot: _Lot, entry_bar: int, last: Decimal) -> OpenTrade:
    direction = 1 if lot.side == "LONG" else -1
    with money_context():
        pnl = (last - lot.price) * lot.size * direction - lot.fee
    return OpenTrade(symbol, lot.side, lot.size, lot.time, lot.price, lot.fee, entry_bar, last, pnl)
