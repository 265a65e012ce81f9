"""What the bar and trade drivers run on: the live loops wired with their adapters swapped
(`BacktestRig`), the signals held until their time, the marks, sizing, and the equity mark.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Protocol

from trading_engine.app.backtest.results import EquityPoint
from trading_engine.app.execution.loop import ExecutionLoop
from trading_engine.app.strategy.loop import StrategyLoop
from trading_engine.domain.models import Signal
from trading_engine.domain.position import Position
from trading_engine.domain.values import ZERO, money_context
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

    def discard(self) -> int:
        """Drop the signals held (decided during a warm-up: never acted on)."""
        dropped, self._held = len(self._held), []
        return dropped

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


@dataclass(frozen=True)
class BacktestRig:
    """The live loops as a backtest driver runs them, with their adapters swapped (the
    in-process bus, the simulated exchange, a settable clock, the run's in-memory store),
    built once by the composition root for the bar and the trade drivers alike."""

    strategy: StrategyLoop
    held: HeldSignals
    execution: ExecutionLoop
    market: MarketSimulator
    clock: SettableClock
    store: EventStore
    marks: Marks
    cash: Decimal
    exchange: str
    parameters: dict[str, Any]
