"""A backtest over trades (GMO's trade files): the same loops as `BarBacktest`, with time
passing trade by trade, as it does live.

For each trade, in the order of the data:

    the exchange is shown the trade: orders placed before it fill at its price
    → the monitor records the fills
    → signals decided at bar closes up to the trade's time are released to the bus
    → execution handles them (sized at this trade's price): they fill at a later trade

which is what happens live, where the trade that closes a bar reaches the strategy before
the signal exists. The strategy loop reads the trades from the in-process stream in
batches, ahead of this walk; its signals wait in `HeldSignals` until their time comes.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from trading_engine.app.backtest.results import BacktestResult, EquityPoint
from trading_engine.app.backtest.rig import (
    BacktestRig,
    Progress,
    fewer_collections,
    mark,
    refresh_positions,
)
from trading_engine.app.backtest.round_trips import round_trips
from trading_engine.domain.bars import bucket_start
from trading_engine.domain.market import Trade
from trading_engine.domain.models import OHLCV
from trading_engine.domain.position import Position
from trading_engine.domain.values import ZERO, Exchange, Symbol, Timeframe


class TradeBacktest:
    def __init__(self, trades: Sequence[Trade], timeframe: Timeframe, rig: BacktestRig) -> None:
        self._trades, self._timeframe, self._rig = trades, timeframe, rig

    def run(self, progress: Progress | None = None) -> BacktestResult:
        with fewer_collections():
            return self._run(progress)

    def _run(self, progress: Progress | None) -> BacktestResult:
        symbols = sorted({str(t.symbol) for t in self._trades})
        positions: dict[str, Position] = {}
        equity: list[EquityPoint] = []
        candles: dict[str, list[list[Any]]] = {s: [] for s in symbols}  # start, o, h, l, c, v
        bucket: datetime | None = None
        seen_log = self._rig.store.max_position()
        self._rig.market.open_private_stream()
        self._rig.execution.start()
        done = 0
        while done < len(self._trades):
            read = self._rig.strategy.step()  # the strategy runs ahead; its signals are held
            if not read:
                break
            for trade in self._trades[done : done + read]:
                symbol = str(trade.symbol)
                start = bucket_start(trade.timestamp, self._timeframe)
                if bucket is not None and start != bucket:
                    equity.append(mark(bucket, self._rig.cash, positions, self._rig.marks.prices))
                bucket = start
                self._rig.clock.set(trade.timestamp)
                self._rig.market.observe_trade(trade)
                if self._rig.execution.live_orders:  # the exchange pushes its fills: no poll
                    self._rig.execution.record_pushed(self._rig.market.take_private_events())
                seen_log = refresh_positions(
                    self._rig.store, self._rig.exchange, symbols, positions, seen_log
                )
                self._rig.marks.prices[symbol] = trade.price
                series = candles[symbol]
                if series and series[-1][0] == start:
                    candle = series[-1]
                    candle[2] = max(candle[2], trade.price)
                    candle[3] = min(candle[3], trade.price)
                    candle[4] = trade.price
                    candle[5] += trade.size
                else:
                    series.append(
                        [start, trade.price, trade.price, trade.price, trade.price, trade.size]
                    )
                if self._rig.held.release(until=trade.timestamp):
                    while self._rig.execution.step(block_ms=0):
                        pass
            done += read
            if progress is not None:
                progress(done, len(self._trades))
        if bucket is not None:
            equity.append(mark(bucket, self._rig.cash, positions, self._rig.marks.prices))
        starts = {s: [c[0] for c in series] for s, series in candles.items()}

        def bar_of(symbol: str, moment: datetime) -> int:
            return bisect_right(starts.get(symbol, []), moment) - 1

        venue = Exchange(self._rig.exchange)
        bars = {
            symbol: [OHLCV(venue, Symbol(symbol), self._timeframe, *candle) for candle in series]
            for symbol, series in candles.items()
        }
        closed, still_open = round_trips(
            self._rig.store,
            self._rig.exchange,
            bar_of,
            {symbol: series[-1].close for symbol, series in bars.items() if series},
        )
        return BacktestResult(
            initial_cash=self._rig.cash,
            equity=equity,
            trades=closed,
            fees_paid=sum((p.fees_paid for p in positions.values()), ZERO),
            prices={s: [(b.timestamp, b.close) for b in series] for s, series in bars.items()},
            parameters=self._rig.parameters,
            open_trades=still_open,
            bars=bars,
        )
