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

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from itertools import groupby

from trading_engine.app.backtest.results import BacktestResult, EquityPoint
from trading_engine.app.backtest.rig import (
    BacktestRig,
    HeldSignals,
    Progress,
    fewer_collections,
    mark,
    refresh_positions,
)
from trading_engine.app.backtest.round_trips import round_trips
from trading_engine.app.execution.loop import ExecutionLoop
from trading_engine.domain.market import Trade
from trading_engine.domain.models import OHLCV, Signal, signal_id_for
from trading_engine.domain.position import Position
from trading_engine.domain.values import ZERO, Side, SignalAction
from trading_engine.ports.broker import MarketSimulator

Checkpoint = Callable[[int, int, Decimal], None]  # (bars done, bars in all, equity now)


class BarBacktest:
    """`trade_from`: the bars before it only warm the strategy up (a walk-forward test
    window's run sees the bars before the window, as live trading would have): their
    signals are dropped, no order is placed and no equity marked before it."""

    def __init__(
        self, bars: dict[str, list[OHLCV]], rig: BacktestRig, trade_from: datetime | None = None
    ) -> None:
        self._bars, self._rig, self._trade_from = bars, rig, trade_from

    def run(
        self, progress: Progress | None = None, checkpoint: Checkpoint | None = None
    ) -> BacktestResult:
        """`checkpoint` is told the equity after each bar time once trading started; it may
        raise to stop the run there (an optimiser pruning a hopeless trial)."""
        with fewer_collections():
            return self._run(progress, checkpoint)

    def _run(self, progress: Progress | None, checkpoint: Checkpoint | None) -> BacktestResult:
        timeline = sorted(
            (bar for series in self._bars.values() for bar in series), key=lambda b: b.timestamp
        )
        equity: list[EquityPoint] = []
        positions: dict[str, Position] = {}
        seen_log = self._rig.store.max_position()
        self._rig.market.open_private_stream()
        self._rig.execution.start()
        done = 0
        warming = self._trade_from is not None
        for moment, group in groupby(timeline, key=lambda b: b.timestamp):
            bars = list(group)
            self._rig.clock.set(moment)
            if warming and moment < self._trade_from:  # type: ignore[operator]
                self._rig.strategy.on_bars(bars)
                self._rig.held.discard()
                done += len(bars)
                if progress is not None:
                    progress(done, len(timeline))
                continue
            warming = False
            for bar in bars:
                self._rig.marks.prices[str(bar.symbol)] = bar.open
            if self._rig.held.release(until=moment):  # the bus holds nothing else
                while self._rig.execution.step(block_ms=0):
                    pass
            for bar in bars:
                self._rig.market.observe_bar(bar)
            if self._rig.execution.live_orders:  # the exchange pushes its fills: no poll
                self._rig.execution.record_pushed(self._rig.market.take_private_events())
                seen_log = refresh_positions(
                    self._rig.store, self._rig.exchange, list(self._bars), positions, seen_log
                )
            self._rig.strategy.on_bars(bars)
            for bar in bars:
                self._rig.marks.prices[str(bar.symbol)] = bar.close
            equity.append(self._mark(moment, positions))
            done += len(bars)
            if checkpoint is not None:
                checkpoint(done, len(timeline), equity[-1].equity)
            if equity[-1].equity <= ZERO and equity[-1].exposed:
                out_of_money(self._rig.held, self._rig.execution, self._rig.market, bars, positions)
                # (-1: no log head to compare with, reload the positions as they now are)
                refresh_positions(
                    self._rig.store, self._rig.exchange, list(self._bars), positions, -1
                )
                later = sorted({bar.timestamp for bar in timeline[done:]})
                equity[-1:] = [EquityPoint(t, ZERO, False) for t in [moment, *later]]
                self._rig.parameters["out_of_money_at"] = moment.isoformat()
                done = len(timeline)
            if progress is not None:
                progress(done, len(timeline))
            if done == len(timeline):
                break
        self._rig.strategy.flush_bars()
        # bars numbered, and priced for buy & hold, from where trading started (as the equity)
        start = self._trade_from
        traded = {
            symbol: [bar for bar in series if start is None or bar.timestamp >= start]
            for symbol, series in self._bars.items()
        }
        index = {
            symbol: {bar.timestamp: n for n, bar in enumerate(series)}
            for symbol, series in traded.items()
        }
        closed, still_open = round_trips(
            self._rig.store,
            self._rig.exchange,
            lambda s, t: index.get(s, {}).get(t, -1),
            {symbol: series[-1].close for symbol, series in self._bars.items()},
        )
        return BacktestResult(
            initial_cash=self._rig.cash,
            equity=equity,
            trades=closed,
            fees_paid=sum((p.fees_paid for p in positions.values()), ZERO),
            prices={
                symbol: [(b.timestamp, b.close) for b in series]
                for symbol, series in traded.items()
            },
            parameters=self._rig.parameters,
            open_trades=still_open,
            bars=self._bars,
        )

    def _mark(self, moment: datetime, positions: dict[str, Position]) -> EquityPoint:
        return mark(moment, self._rig.cash, positions, self._rig.marks.prices)


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
