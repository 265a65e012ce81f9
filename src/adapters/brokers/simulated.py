"""A deterministic simulated exchange implementing the Broker port (backtests, paper runs, tests).

Why it looks like this:

* **No look-ahead.** An order only ever fills against market data observed *after* it was
  placed: a market order takes the next trade's price (or the next bar's open), never the last
  price it saw. Everything happens under one lock, so "after" is well defined even when the
  execution loop and the market-data feed run in different threads.
* **Deterministic.** No wall clock, no randomness: the same placements and the same trades in
  the same order give the same ids, fills, prices and fees. Order timestamps come from the
  injected clock, or else from the market data's own time.
* **Liquidity is finite, if asked.** With a `volume_participation`, our orders together take
  at most that share of each trade's (or bar's) size, oldest order first; the rest waits, so
  partial fills happen. `None` lifts the limit, as backtesting.py has none: an order then
  fills in full at the price it reaches, whatever the volume printed (or missing).
* **GMO-like refusals.** Placement checks raise `OrderRejected` with GMO's codes, so the
  engine's rejection paths are exercised without a network.

Margin model: on leverage symbols (`BTC_JPY`) an OPEN order opens a position (one per order;
its fills extend it) and a CLOSE order settles the opposite positions FIFO, realized gain and
fees going to the quote balance. There is no margin requirement, no loss-cut, no swap: margin
orders do not check balances at all.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import NoReturn

from trading_engine.adapters.brokers.simulated_book import (
    bar_fill_price,
    base_and_quote,
    buy_cost,
    fee_of,
    floor_to_step,
    is_multiple,
    slipped,
    to_scale,
    trade_fill_price,
    would_cross,
)
from trading_engine.domain.market import Trade
from trading_engine.domain.models import OHLCV
from trading_engine.domain.sizing import GMO_RULES, SymbolRules
from trading_engine.domain.values import (
    ZERO,
    CancelType,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    money_context,
)
from trading_engine.ports.broker import (
    Balance,
    ExchangeExecution,
    ExchangeOrder,
    ExchangePosition,
    OrderNotCancelable,
    OrderNotFound,
    OrderRejected,
    OrderRequest,
    PrivateEvents,
)
from trading_engine.ports.clock import Clock

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RECENT_EXECUTIONS = 100
FILL_MARKET_AT = ("next_trade", "last_price")
DEFAULT_BALANCES = {"JPY": Decimal(100_000_000), "BTC": Decimal(10), "XRP": Decimal(100_000)}
_ONCE = (TimeInForce.FAK, TimeInForce.FOK)  # orders that get exactly one chance to fill


@dataclass(slots=True)
class _Order:
    order_id: str
    request: OrderRequest
    timestamp: datetime
    margin: bool
    fee_rate: Decimal
    reference: Decimal | None  # price a spot buy reserves quote at (limit, or slipped last)
    status: OrderStatus = OrderStatus.NEW
    executed: Decimal = ZERO
    cancel_type: CancelType | None = None

    @property
    def remaining(self) -> Decimal:
        return self.request.size - self.executed

    @property
    def closes(self) -> bool:
        return self.margin and self.request.settle == "CLOSE"

    def snapshot(self) -> ExchangeOrder:
        r = self.request
        return ExchangeOrder(
            exchange_order_id=self.order_id,
            symbol=r.symbol,
            side=r.side,
            order_type=r.order_type,
            size=r.size,
            price=r.price,
            status=self.status,
            executed_size=self.executed,
            timestamp=self.timestamp,
            cancel_type=self.cancel_type,
            raw_status=self.status.value,
            client_order_id=r.client_order_id,
        )


@dataclass(slots=True)
class _Position:
    position_id: str
    symbol: str
    side: Side
    size: Decimal
    price: Decimal


class SimulatedExchange:
    """One simulated account; feed it market data with `observe_trade` / `observe_bar`."""

    def __init__(
        self,
        name: str = "simulated",
        *,
        fee_rate: Decimal = ZERO,
        maker_fee_rate: Decimal | None = None,
        slippage: Decimal = ZERO,
        volume_participation: Decimal | None = Decimal(1),
        rules: dict[str, SymbolRules] = GMO_RULES,
        balances: dict[str, Decimal] | None = None,
        quote: str = "JPY",
        clock: Clock | None = None,
        fill_market_at: str = "next_trade",
        borrowing: bool = False,
    ) -> None:
        """`fee_rate` is the taker rate (market orders), `maker_fee_rate` the limit orders'
        (negative for a rebate); both are charged in the quote currency on each fill.
        `slippage` is adverse and applies to market orders only. `fill_market_at="last_price"`
        fills market orders in full on placement at the last price (like the GMO and ccxt
        stand-ins), without a volume limit; the default waits for the next trade or bar.
        Without a `clock`, order timestamps are the last market data's time (or the epoch),
        so that runs stay reproducible. `borrowing=True` makes the account a netting margin
        account, as a backtest that shorts assumes: no funds checks on spot symbols, and a
        balance may go negative (a short holds a negative base balance)."""
        if fill_market_at not in FILL_MARKET_AT:
            raise ValueError(f"fill_market_at must be one of {FILL_MARKET_AT}")
        if volume_participation is not None and not ZERO < volume_participation <= Decimal(1):
            raise ValueError("volume_participation must be in (0, 1], or None for no limit")
        if not ZERO <= slippage < Decimal(1):
            raise ValueError("slippage is a fraction of the price in [0, 1)")
        self.name = name
        self._taker_rate = fee_rate
        self._maker_rate = fee_rate if maker_fee_rate is None else maker_fee_rate
        self._slippage = slippage
        self._participation = volume_participation
        self._rules = dict(rules)
        self._balances = dict(DEFAULT_BALANCES if balances is None else balances)
        self._quote = quote
        self._clock = clock
        self._fill_market_at = fill_market_at
        self._borrowing = borrowing
        self._lock = threading.Lock()
        self._orders: dict[str, _Order] = {}
        self._live: dict[str, dict[str, _Order]] = {}  # symbol -> live orders, oldest first
        self._executions: dict[str, list[ExchangeExecution]] = {}
        self._recent: dict[str, deque[ExchangeExecution]] = {}
        self._positions: list[_Position] = []  # oldest first: CLOSE settles FIFO
        self._position_of: dict[str, _Position] = {}  # OPEN order id -> its position
        self._last: dict[str, Decimal] = {}
        self._market_time: datetime | None = None
        self._order_seq = self._execution_seq = self._position_seq = 0
        self._placements = 0
        # The private stream, once open: fills and changed orders not yet taken.
        self._streaming = False
        self._pushed: list[ExchangeExecution] = []
        self._changed: dict[str, _Order] = {}

    # ---- market data ---------------------------------------------------------------------

    def observe_trade(self, trade: Trade) -> None:
        """A print: live orders on its symbol that it reaches fill (volume-limited)."""
        symbol = str(trade.symbol)
        with self._lock:
            self._market_time = trade.timestamp
            self._match(
                symbol,
                trade.timestamp,
                trade.size,
                lambda o: trade_fill_price(
                    o.request.order_type,
                    o.request.side,
                    o.request.price,
                    trade.price,
                    self._slippage,
                ),
            )
            self._last[symbol] = trade.price

    def observe_bar(self, bar: OHLCV) -> None:
        """A bar: market orders take its open, limits fill if its range reaches them."""
        symbol = str(bar.symbol)
        with self._lock:
            self._market_time = bar.timestamp
            self._match(
                symbol,
                bar.timestamp,
                bar.volume,
                lambda o: bar_fill_price(
                    o.request.order_type,
                    o.request.side,
                    o.request.price,
                    (bar.open, bar.high, bar.low),
                    self._slippage,
                ),
            )
            self._last[symbol] = bar.close

    def last_price(self, symbol: str) -> Decimal | None:
        with self._lock:
            return self._last.get(symbol)

    def set_last_price(self, symbol: str, price: Decimal) -> None:
        """Seed the reference price (funds checks, SOK, `last_price` market fills)."""
        with self._lock:
            self._last[symbol] = price

    def placements_seen(self) -> int:
        with self._lock:
            return self._placements

    # ---- the private stream (what GMO pushes over its private WebSocket) ------------------

    def open_private_stream(self) -> None:
        """Keep every fill and order change from now on until `take_private_events`: the
        account's facts arrive as they happen, not when a poll asks (a backtest's fills)."""
        with self._lock:
            self._streaming = True

    def take_private_events(self) -> PrivateEvents:
        with self._lock:
            taken = PrivateEvents(
                tuple(self._pushed), tuple(o.snapshot() for o in self._changed.values())
            )
            self._pushed, self._changed = [], {}
            return taken

    def _push(self, order: _Order, execution: ExchangeExecution | None = None) -> None:
        if self._streaming:
            if execution is not None:
                self._pushed.append(execution)
            self._changed[order.order_id] = order

    # ---- the Broker port -------------------------------------------------------------------

    def place_order(self, request: OrderRequest) -> str:
        with self._lock:
            rules, margin = self._validate(request)
            maker = request.order_type is OrderType.LIMIT
            rate = self._maker_rate if maker else self._taker_rate
            reference = self._reference(request)
            if (
                not margin
                and request.side is Side.BUY
                and reference is not None
                and not self._borrowing
            ):
                _, quote = base_and_quote(request.symbol, self._quote)
                need = buy_cost(reference, request.size, rate)
                have = self._available(quote)
                if need > have:
                    self._reject(
                        "ERR-201", f"insufficient {quote}: needs {need} incl. fee, has {have}"
                    )
            self._order_seq += 1
            self._placements += 1
            order = _Order(
                order_id=f"sim-{self._order_seq}",
                request=request,
                timestamp=self._now(),
                margin=margin,
                fee_rate=rate,
                reference=reference,
            )
            self._orders[order.order_id] = order
            self._executions[order.order_id] = []
            last = self._last.get(request.symbol)
            if (
                request.time_in_force is TimeInForce.SOK
                and request.price is not None
                and last is not None
                and would_cross(request.side, request.price, last)
            ):
                order.status, order.cancel_type = OrderStatus.CANCELED, CancelType.EXPIRED
                self._push(order)
                return order.order_id
            self._live.setdefault(request.symbol, {})[order.order_id] = order
            if (
                self._fill_market_at == "last_price"
                and request.order_type is OrderType.MARKET
                and last is not None
            ):
                price = slipped(last, request.side, self._slippage)
                self._fill_one(order, rules, price, request.size, self._now())
            return order.order_id

    def find_order(
        self, request: OrderRequest, placed_after: datetime, exclude: Collection[str] = ()
    ) -> ExchangeOrder | None:
        """By client order id: the simulated exchange keeps ours."""
        with self._lock:
            for order in self._orders.values():
                if (
                    order.request.client_order_id == request.client_order_id
                    and order.order_id not in exclude
                ):
                    return order.snapshot()
            return None

    def cancel_order(self, exchange_order_id: str) -> None:
        with self._lock:
            order = self._get(exchange_order_id)
            if not order.status.is_live:
                raise OrderNotCancelable(
                    f"order {exchange_order_id} is {order.status}", "ERR-5122", self.name
                )
            self._end(order, CancelType.USER)

    def fetch_order(self, exchange_order_id: str) -> ExchangeOrder:
        with self._lock:
            return self._get(exchange_order_id).snapshot()

    def fetch_orders(self, exchange_order_ids: Sequence[str]) -> Sequence[ExchangeOrder]:
        with self._lock:
            known = (self._orders.get(i) for i in exchange_order_ids)
            return [order.snapshot() for order in known if order is not None]

    def fetch_executions(self, exchange_order_id: str) -> Sequence[ExchangeExecution]:
        with self._lock:
            return list(self._executions.get(exchange_order_id, ()))

    def open_orders(self, symbol: str) -> Sequence[ExchangeOrder]:
        with self._lock:
            return [o.snapshot() for o in self._live.get(symbol, {}).values()]

    def recent_executions(self, symbol: str) -> Sequence[ExchangeExecution]:
        with self._lock:
            return list(self._recent.get(symbol, ()))

    def balances(self) -> Sequence[Balance]:
        with self._lock:
            reserved = self._reserved()
            return [
                Balance(asset, amount, amount - reserved.get(asset, ZERO))
                for asset, amount in self._balances.items()
            ]

    def positions(self, symbol: str) -> Sequence[ExchangePosition]:
        with self._lock:
            return [
                ExchangePosition(p.position_id, p.symbol, p.side, p.size, p.price)
                for p in self._positions
                if p.symbol == symbol
            ]

    # ---- placement checks (lock held) ------------------------------------------------------

    def _reject(self, code: str, message: str) -> NoReturn:
        raise OrderRejected(message, code, self.name)

    def _validate(self, request: OrderRequest) -> tuple[SymbolRules, bool]:
        rules = self._rules.get(request.symbol)
        if rules is None:
            self._reject("ERR-5106", f"unknown symbol {request.symbol!r}")
        kind, price, size = request.order_type, request.price, request.size
        if kind not in (OrderType.MARKET, OrderType.LIMIT):
            self._reject("ERR-5106", f"{kind} orders are not supported by the simulator")
        if kind is OrderType.LIMIT and price is None:
            self._reject("ERR-5106", "a LIMIT order needs a price")
        if kind is OrderType.MARKET and price is not None:
            self._reject("ERR-5106", "a MARKET order takes no price")
        if request.time_in_force is TimeInForce.SOK and kind is not OrderType.LIMIT:
            self._reject("ERR-5106", "SOK (post-only) is for LIMIT orders only")
        if request.settle not in ("OPEN", "CLOSE"):
            self._reject("ERR-5106", f"settle must be OPEN or CLOSE, not {request.settle!r}")
        if size < rules.min_size:
            self._reject("ERR-5126", f"size {size} is below the minimum {rules.min_size}")
        if not is_multiple(size, rules.size_step):
            self._reject("ERR-5114", f"size {size} is not a multiple of {rules.size_step}")
        if price is not None and price <= ZERO:
            self._reject("ERR-5121", f"price {price} must be positive")
        if price is not None and not is_multiple(price, rules.tick_size):
            self._reject("ERR-5114", f"price {price} is not a multiple of {rules.tick_size}")
        margin = Symbol(request.symbol).is_gmo_leverage
        if margin and request.settle == "CLOSE":
            self._check_close(request)
        if not margin and request.side is Side.SELL and not self._borrowing:
            base, _ = base_and_quote(request.symbol, self._quote)
            have = self._available(base)
            if size > have:
                self._reject("ERR-208", f"insufficient {base}: selling {size}, has {have}")
        return rules, margin

    def _check_close(self, request: OrderRequest) -> None:
        """A CLOSE settles opposite positions not already promised to other live CLOSEs."""
        opposite = request.side.opposite
        held = sum(
            (p.size for p in self._positions if p.symbol == request.symbol and p.side is opposite),
            ZERO,
        )
        if held == ZERO:
            self._reject("ERR-254", f"no open {opposite} position on {request.symbol} to close")
        promised = sum(
            (
                o.remaining
                for o in self._live.get(request.symbol, {}).values()
                if o.closes and o.request.side is request.side
            ),
            ZERO,
        )
        if request.size > held - promised:
            self._reject(
                "ERR-189",
                f"close size {request.size} exceeds the open {opposite} size "
                f"{held - promised} on {request.symbol}",
            )

    def _reference(self, request: OrderRequest) -> Decimal | None:
        if request.price is not None:
            return request.price
        last = self._last.get(request.symbol)
        return None if last is None else slipped(last, request.side, self._slippage)

    def _reserved(self, skip: _Order | None = None) -> dict[str, Decimal]:
        """What live spot orders hold back: the asset a sell gives, the quote a buy pays."""
        reserved: dict[str, Decimal] = {}
        for live in self._live.values():
            for order in live.values():
                if order.margin or order is skip:
                    continue
                base, quote = base_and_quote(order.request.symbol, self._quote)
                if order.request.side is Side.SELL:
                    reserved[base] = reserved.get(base, ZERO) + order.remaining
                elif order.reference is not None:
                    cost = buy_cost(order.reference, order.remaining, order.fee_rate)
                    reserved[quote] = reserved.get(quote, ZERO) + cost
        return reserved

    def _available(self, asset: str, skip: _Order | None = None) -> Decimal:
        return self._balances.get(asset, ZERO) - self._reserved(skip).get(asset, ZERO)

    # ---- matching (lock held) -------------------------------------------------------------

    def _match(
        self,
        symbol: str,
        when: datetime,
        volume: Decimal,
        price_for: Callable[[_Order], Decimal | None],
    ) -> None:
        live = self._live.get(symbol)
        rules = self._rules.get(symbol)
        if not live or rules is None:
            return
        capacity: Decimal | None = None  # None: no volume limit
        if self._participation is not None:
            with money_context():
                capacity = volume * self._participation
        for order in list(live.values()):  # oldest first
            price = price_for(order)
            room = order.remaining if capacity is None else floor_to_step(capacity, rules.size_step)
            if price is not None and room > ZERO:
                size = min(order.remaining, room)
                filled = self._fill_one(order, rules, price, size, when)
                if capacity is not None:
                    capacity -= filled
            if order.status.is_live and order.request.time_in_force in _ONCE:
                self._end(order, CancelType.EXPIRED)

    def _fill_one(
        self, order: _Order, rules: SymbolRules, price: Decimal, size: Decimal, when: datetime
    ) -> Decimal:
        """Fill up to `size` at `price`, as far as funds (spot) or positions (CLOSE) allow;
        returns the size filled. A shortfall cancels the rest as INSUFFICIENT_BALANCE."""
        if size <= ZERO:
            return ZERO
        short = False
        base, quote = base_and_quote(order.request.symbol, self._quote)
        if order.closes:
            held = sum(
                (
                    p.size
                    for p in self._positions
                    if p.symbol == order.request.symbol and p.side is order.request.side.opposite
                ),
                ZERO,
            )
            short, size = size > held, min(size, held)
        elif not order.margin and not self._borrowing:
            if order.request.side is Side.BUY:
                with money_context():
                    unit = price * (Decimal(1) + order.fee_rate)
                    fits = floor_to_step(self._available(quote, order) / unit, rules.size_step)
            else:
                fits = floor_to_step(self._available(base, order), rules.size_step)
            if fits < size:
                short, size = True, fits
        if order.request.time_in_force is TimeInForce.FOK and size < order.remaining:
            size = ZERO  # all or nothing, whether volume or funds fell short
        if size > ZERO:
            self._book_fill(order, price, size, when, base, quote)
        if short and order.status.is_live:
            self._end(order, CancelType.INSUFFICIENT_BALANCE)
        return size

    def _book_fill(
        self, order: _Order, price: Decimal, size: Decimal, when: datetime, base: str, quote: str
    ) -> None:
        fee = fee_of(price, size, order.fee_rate)
        side = order.request.side
        with money_context():
            if order.margin:
                self._settle_margin(order, price, size)
                self._balances[quote] = self._balances.get(quote, ZERO) - fee
            else:
                sign = Decimal(side.sign)
                self._balances[quote] = self._balances.get(quote, ZERO) - sign * price * size - fee
                self._balances[base] = self._balances.get(base, ZERO) + sign * size
            order.executed += size
        order.status = (
            OrderStatus.FILLED if order.remaining == ZERO else OrderStatus.PARTIALLY_FILLED
        )
        if order.status is OrderStatus.FILLED:
            self._live[order.request.symbol].pop(order.order_id, None)
            self._position_of.pop(order.order_id, None)
        self._execution_seq += 1
        execution = ExchangeExecution(
            f"sim-x{self._execution_seq}",
            order.order_id,
            order.request.symbol,
            side,
            price,
            size,
            fee,
            when,
        )
        self._executions[order.order_id].append(execution)
        recent = self._recent.setdefault(order.request.symbol, deque(maxlen=RECENT_EXECUTIONS))
        recent.append(execution)
        self._push(order, execution)

    def _settle_margin(self, order: _Order, price: Decimal, size: Decimal) -> None:
        symbol, side = order.request.symbol, order.request.side
        if not order.closes:  # OPEN: one position per order, its later fills extend it
            position = self._position_of.get(order.order_id)
            if position is not None and position.size > ZERO:
                position.price = to_scale(
                    (position.price * position.size + price * size) / (position.size + size)
                )
                position.size += size
                return
            self._position_seq += 1
            position = _Position(f"simpos-{self._position_seq}", symbol, side, size, price)
            self._positions.append(position)
            self._position_of[order.order_id] = position
            return
        left, realized = size, ZERO
        for p in [p for p in self._positions if p.symbol == symbol and p.side is side.opposite]:
            taken = min(p.size, left)
            realized += (price - p.price) * taken * p.side.sign
            p.size -= taken
            left -= taken
            if left == ZERO:
                break
        self._positions = [p for p in self._positions if p.size > ZERO]
        _, quote = base_and_quote(symbol, self._quote)
        self._balances[quote] = self._balances.get(quote, ZERO) + realized

    # ---- bookkeeping (lock held) ----------------------------------------------------------

    def _end(self, order: _Order, cancel_type: CancelType) -> None:
        order.status, order.cancel_type = OrderStatus.CANCELED, cancel_type
        self._live.get(order.request.symbol, {}).pop(order.order_id, None)
        self._position_of.pop(order.order_id, None)
        self._push(order)

    def _get(self, exchange_order_id: str) -> _Order:
        order = self._orders.get(exchange_order_id)
        if order is None:
            raise OrderNotFound(f"unknown order {exchange_order_id}", "ERR-5123", self.name)
        return order

    def _now(self) -> datetime:
        if self._clock is not None:
            return self._clock.now()
        return self._market_time or EPOCH
