"""A run's round trips, read from its positions' events: each closed trade with its entry
and exit, and what is still open at the end (as backtesting.py reports them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from trading_engine.app.backtest.results import ClosedTrade, OpenTrade
from trading_engine.domain.position import Position, position_id_for
from trading_engine.domain.values import ZERO, money_context
from trading_engine.ports.event_store import EventStore


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
