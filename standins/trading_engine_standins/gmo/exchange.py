"""The stand-in's in-memory exchange: account, orders, executions and margin positions.

No HTTP here, so the matching rules can be read (and driven by tests) on their own. Every public
method takes the one lock, because the HTTP server calls in from many handler threads while a
test thread moves the market. Money and sizes are `Decimal` throughout; the HTTP layer turns them
into GMO's strings with `fmt`.

The market is a single last price per symbol, not a book: resting LIMIT orders fill when a
printed trade crosses them (at their own price, as makers), MARKET orders fill at the last price
(as takers). That is all a broker adapter needs to see GMO's statuses and partial fills.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

MAINTENANCE_MESSAGE = "MAINTENANCE. Please wait for a while"

# Messages are only for humans; clients act on the code.
MESSAGES: dict[str, str] = {
    "ERR-70": "The side of the settlement order is wrong.",
    "ERR-189": "The quantity of your close order exceeds your open position.",
    "ERR-200": "There are existing active orders and your order exceeds the maximum quantity.",
    "ERR-201": "Insufficient funds.",
    "ERR-208": "The quantity of your order exceeds your available balance.",
    "ERR-254": "The specified position does not exist.",
    "ERR-430": "Invalid orderId or executionId.",
    "ERR-554": "The server is unavailable.",
    "ERR-626": "The server is busy.",
    "ERR-5003": "Requests are too many.",
    "ERR-5007": "API-TIMESTAMP is not set or invalid.",
    "ERR-5008": "API-TIMESTAMP is too late compared to the server time.",
    "ERR-5009": "API-TIMESTAMP is too early compared to the server time.",
    "ERR-5010": "The signature is invalid.",
    "ERR-5011": "API-KEY is not set.",
    "ERR-5012": "API-KEY authentication failed.",
    "ERR-5106": "Invalid request parameter.",
    "ERR-5114": "The number of decimal places exceeds the limit.",
    "ERR-5121": "The price is too low.",
    "ERR-5122": "The request is invalid in the current order status.",
    "ERR-5123": "The specified order does not exist.",
    "ERR-5126": "The order quantity is out of range.",
    "ERR-5201": MAINTENANCE_MESSAGE,
    "ERR-5202": MAINTENANCE_MESSAGE,
    "ERR-5203": MAINTENANCE_MESSAGE,
    "ERR-5204": "The API path is invalid.",
    "ERR-5208": "orderId and executionId cannot be specified together.",
}

# GMO answers maintenance and pre-open with status 5, every other error with status 1.
STATUS_5_CODES = frozenset({"ERR-5201", "ERR-5202", "ERR-5203"})


class ExchangeError(Exception):
    """A refusal GMO would answer inside the envelope (HTTP 200, non-zero status)."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.message = message or MESSAGES.get(code, "Error.")

    @property
    def status(self) -> int:
        return 5 if self.code in STATUS_5_CODES else 1


@dataclass(frozen=True)
class SymbolRule:
    symbol: str
    min_size: Decimal
    max_size: Decimal
    size_step: Decimal
    tick_size: Decimal
    taker_fee: Decimal
    maker_fee: Decimal

    @property
    def is_margin(self) -> bool:
        return self.symbol.endswith("_JPY")

    @property
    def asset(self) -> str:
        return self.symbol.removesuffix("_JPY")


def _rule(
    symbol: str, mn: str, mx: str, step: str, tick: str, taker: str, maker: str
) -> SymbolRule:
    return SymbolRule(
        symbol,
        Decimal(mn),
        Decimal(mx),
        Decimal(step),
        Decimal(tick),
        Decimal(taker),
        Decimal(maker),
    )


SYMBOLS: dict[str, SymbolRule] = {
    r.symbol: r
    for r in (
        _rule("BTC", "0.00001", "5", "0.00001", "1", "0.0005", "-0.0001"),
        _rule("ETH", "0.0001", "100", "0.0001", "1", "0.0005", "-0.0001"),
        _rule("XRP", "1", "1000000", "1", "0.001", "0", "0"),
        _rule("BTC_JPY", "0.001", "10", "0.001", "1", "0", "0"),
    )
}

DEFAULT_LAST_PRICES: dict[str, Decimal] = {
    "BTC": Decimal("5000000"),
    "BTC_JPY": Decimal("5000000"),
    "XRP": Decimal("100"),
    "ETH": Decimal("300000"),
}


def default_balances() -> dict[str, Decimal]:
    return {"JPY": Decimal("100000000"), "BTC": Decimal("10"), "XRP": Decimal("100000")}


def fmt(value: Decimal) -> str:
    """GMO's number strings: plain notation, no exponent, no trailing zeros, never "-0"."""
    if value == 0:
        return "0"
    text = format(value.normalize(), "f")
    return text


def now_utc() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """UTC ISO-8601 with milliseconds and Z, as GMO writes timestamps."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _decimal(value: Any) -> Decimal:
    """A request number: GMO sends strings; ints are tolerated, floats are not (precision)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ExchangeError("ERR-5106")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ExchangeError("ERR-5106") from None
    if not number.is_finite():
        raise ExchangeError("ERR-5106")
    return number


def _slice(rows: Iterator[Any], page: int, count: int) -> list[Any]:
    """Page `page` (from 1) of `count` rows, without materialising the rows before it."""
    return list(itertools.islice(rows, (page - 1) * count, page * count))


def _order_id(value: Any) -> int:
    if isinstance(value, bool):
        raise ExchangeError("ERR-5106")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ExchangeError("ERR-5106")


@dataclass
class Position:
    position_id: int
    symbol: str
    side: str
    size: Decimal
    price: Decimal
    timestamp: datetime
    leverage: str = "2"


@dataclass
class Order:
    order_id: int
    symbol: str
    side: str
    execution_type: str
    settle_type: str
    size: Decimal
    price: Decimal | None
    time_in_force: str
    timestamp: datetime
    executed_size: Decimal = Decimal(0)
    status: str = "ORDERED"
    cancel_type: str | None = None
    # For CLOSE orders: [position_id, size still to settle] reserved at placement, FIFO.
    settlements: list[list[Any]] = field(default_factory=list)

    @property
    def remaining(self) -> Decimal:
        return self.size - self.executed_size

    @property
    def active(self) -> bool:
        return self.status in ("ORDERED", "WAITING")

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "rootOrderId": self.order_id,
            "orderId": self.order_id,
            "symbol": self.symbol,
            "side": self.side,
            "orderType": "NORMAL",
            "executionType": self.execution_type,
            "settleType": self.settle_type,
            "size": fmt(self.size),
            "executedSize": fmt(self.executed_size),
            "price": fmt(self.price) if self.price is not None else "0",
            "losscutPrice": "0",
            "status": self.status,
        }
        if self.cancel_type is not None:
            row["cancelType"] = self.cancel_type
        row["timeInForce"] = self.time_in_force
        row["timestamp"] = iso(self.timestamp)
        return row


@dataclass
class Execution:
    execution_id: int
    order_id: int
    position_id: int | None
    symbol: str
    side: str
    settle_type: str
    size: Decimal
    price: Decimal
    loss_gain: Decimal
    fee: Decimal
    timestamp: datetime

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"executionId": self.execution_id, "orderId": self.order_id}
        if self.position_id is not None:
            row["positionId"] = self.position_id
        row.update(
            symbol=self.symbol,
            side=self.side,
            settleType=self.settle_type,
            size=fmt(self.size),
            price=fmt(self.price),
            lossGain=fmt(self.loss_gain),
            fee=fmt(self.fee),
            timestamp=iso(self.timestamp),
        )
        return row


@dataclass
class Trade:
    """A public print (market_trade), for /public/v1/trades and the ticker."""

    symbol: str
    side: str
    size: Decimal
    price: Decimal
    timestamp: datetime


class Exchange:
    """All state of one stand-in account; each public method holds `lock` for its whole run."""

    def __init__(self, balances: dict[str, Decimal] | None = None) -> None:
        self.lock = threading.RLock()
        self.balances: dict[str, Decimal] = dict(balances or default_balances())
        self.last_prices: dict[str, Decimal] = dict(DEFAULT_LAST_PRICES)
        self.auto_fill_market = True
        self.orders: dict[int, Order] = {}
        self.executions: list[Execution] = []
        # Indexes, so that a benchmark with thousands of orders stays fast: active orders in
        # id order (oldest first), executions by order and by id.
        self._active: dict[int, Order] = {}
        self._executions_of: dict[int, list[Execution]] = {}
        self._execution_by_id: dict[int, Execution] = {}
        self.positions: dict[int, Position] = {}
        self.trades: list[Trade] = []
        # Per symbol [high, low, volume] of the prints, kept up to date for a cheap ticker.
        self._stats: dict[str, list[Decimal]] = {}
        self.placements = 0
        # Ids that look like GMO's and differ from run to run, so no client can assume 1, 2, 3.
        rng = random.Random()
        self._next_order_id = rng.randint(100_000, 899_999)
        self._next_execution_id = rng.randint(100_000, 899_999)
        self._next_position_id = rng.randint(100_000, 899_999)
        # Which position an OPEN order's fills extend (one position per order).
        self._position_of_order: dict[int, int] = {}

    # ------------------------------------------------------------------ helpers
    def _rule(self, symbol: Any) -> SymbolRule:
        if not isinstance(symbol, str) or symbol not in SYMBOLS:
            raise ExchangeError("ERR-5106")
        return SYMBOLS[symbol]

    def _new_order_id(self) -> int:
        self._next_order_id += 1
        return self._next_order_id

    def _new_execution_id(self) -> int:
        self._next_execution_id += 1
        return self._next_execution_id

    def _new_position_id(self) -> int:
        self._next_position_id += 1
        return self._next_position_id

    @staticmethod
    def _side(value: Any) -> str:
        if value not in ("BUY", "SELL"):
            raise ExchangeError("ERR-5106")
        return str(value)

    def _size(self, rule: SymbolRule, value: Any) -> Decimal:
        if value is None:
            raise ExchangeError("ERR-5106")
        size = _decimal(value)
        if size <= 0:
            raise ExchangeError("ERR-5106")
        if size % rule.size_step != 0:
            raise ExchangeError("ERR-5114")
        if size < rule.min_size or size > rule.max_size:
            raise ExchangeError("ERR-5126")
        return size

    def _price(self, rule: SymbolRule, execution_type: str, value: Any) -> Decimal | None:
        if execution_type == "MARKET":
            return None
        if value is None or value == "":
            raise ExchangeError("ERR-5106")
        price = _decimal(value)
        if price <= 0:
            raise ExchangeError("ERR-5121")
        if price % rule.tick_size != 0:
            raise ExchangeError("ERR-5114")
        return price

    @staticmethod
    def _time_in_force(execution_type: str, value: Any) -> str:
        if value is None or value == "":
            return "FAS" if execution_type == "LIMIT" else "FAK"
        if value not in ("FAK", "FAS", "FOK", "SOK"):
            raise ExchangeError("ERR-5106")
        if value == "SOK" and execution_type != "LIMIT":
            raise ExchangeError("ERR-5106")
        return str(value)

    def _available(self, asset: str) -> Decimal:
        """Balance minus what active spot orders hold (JPY for buys, the asset for sells)."""
        held = Decimal(0)
        for order in self._active.values():
            rule = SYMBOLS[order.symbol]
            if rule.is_margin:
                continue
            if asset == "JPY" and order.side == "BUY":
                price = order.price if order.price is not None else self.last_prices[order.symbol]
                held += order.remaining * price * (1 + max(rule.taker_fee, Decimal(0)))
            elif asset == rule.asset and order.side == "SELL":
                held += order.remaining
        return self.balances.get(asset, Decimal(0)) - held

    def _check_funds(
        self, rule: SymbolRule, side: str, size: Decimal, price: Decimal | None
    ) -> None:
        if rule.is_margin:
            return
        if side == "BUY":
            unit = price if price is not None else self.last_prices[rule.symbol]
            need = size * unit * (1 + max(rule.taker_fee, Decimal(0)))
            if need > self._available("JPY"):
                raise ExchangeError("ERR-201")
        elif size > self._available(rule.asset):
            raise ExchangeError("ERR-208")

    @staticmethod
    def _crosses(order: Order, price: Decimal) -> bool:
        """Whether a print at `price` reaches the order (a resting MARKET order always does)."""
        if order.execution_type == "MARKET":
            return True
        assert order.price is not None
        if order.execution_type == "STOP":
            return price >= order.price if order.side == "BUY" else price <= order.price
        return price <= order.price if order.side == "BUY" else price >= order.price

    def _reserved_on(self, position_id: int) -> Decimal:
        """A position's `orderdSize`: what active close orders still mean to settle from it."""
        return sum(
            (
                Decimal(s[1])
                for o in self._active.values()
                for s in o.settlements
                if s[0] == position_id
            ),
            Decimal(0),
        )

    # ------------------------------------------------------------------ placement
    def place_order(self, body: dict[str, Any]) -> Order:
        """POST /v1/order. On a margin symbol this always opens a position."""
        with self.lock:
            rule = self._rule(body.get("symbol"))
            side = self._side(body.get("side"))
            execution_type = body.get("executionType")
            if execution_type not in ("MARKET", "LIMIT", "STOP"):
                raise ExchangeError("ERR-5106")
            time_in_force = self._time_in_force(execution_type, body.get("timeInForce"))
            size = self._size(rule, body.get("size"))
            price = self._price(rule, execution_type, body.get("price"))
            self._check_funds(rule, side, size, price)
            return self._create(rule, side, execution_type, "OPEN", size, price, time_in_force)

    def close_order(self, body: dict[str, Any]) -> Order:
        """POST /v1/closeOrder: settle the named positions."""
        with self.lock:
            rule, side, execution_type, time_in_force, price = self._close_common(body)
            settle = body.get("settlePosition")
            if not isinstance(settle, list) or not settle:
                raise ExchangeError("ERR-5106")
            settlements: list[list[Any]] = []
            for item in settle:
                if not isinstance(item, dict):
                    raise ExchangeError("ERR-5106")
                position_id = _order_id(item.get("positionId"))
                size = self._size(rule, item.get("size"))
                position = self.positions.get(position_id)
                if position is None or position.symbol != rule.symbol:
                    raise ExchangeError("ERR-254")
                if position.side == side:
                    raise ExchangeError("ERR-70")
                if size > position.size - self._reserved_on(position_id):
                    raise ExchangeError("ERR-189")
                settlements.append([position_id, size])
            total = sum((s[1] for s in settlements), Decimal(0))
            return self._create(
                rule, side, execution_type, "CLOSE", total, price, time_in_force, settlements
            )

    def close_bulk_order(self, body: dict[str, Any]) -> Order:
        """POST /v1/closeBulkOrder: settle `size` from opposite-side positions, oldest first."""
        with self.lock:
            rule, side, execution_type, time_in_force, price = self._close_common(body)
            size = self._size(rule, body.get("size"))
            opposite = [
                p
                for p in sorted(self.positions.values(), key=lambda p: p.position_id)
                if p.symbol == rule.symbol and p.side != side
            ]
            if not opposite:
                raise ExchangeError("ERR-254")
            settlements: list[list[Any]] = []
            left = size
            for position in opposite:
                free = position.size - self._reserved_on(position.position_id)
                take = min(free, left)
                if take > 0:
                    settlements.append([position.position_id, take])
                    left -= take
                if left == 0:
                    break
            if left > 0:
                raise ExchangeError("ERR-189")
            return self._create(
                rule, side, execution_type, "CLOSE", size, price, time_in_force, settlements
            )

    def _close_common(
        self, body: dict[str, Any]
    ) -> tuple[SymbolRule, str, str, str, Decimal | None]:
        rule = self._rule(body.get("symbol"))
        if not rule.is_margin:
            raise ExchangeError("ERR-5106")
        side = self._side(body.get("side"))
        execution_type = body.get("executionType")
        if execution_type not in ("MARKET", "LIMIT", "STOP"):
            raise ExchangeError("ERR-5106")
        time_in_force = self._time_in_force(execution_type, body.get("timeInForce"))
        price = self._price(rule, execution_type, body.get("price"))
        return rule, side, execution_type, time_in_force, price

    def _create(
        self,
        rule: SymbolRule,
        side: str,
        execution_type: str,
        settle_type: str,
        size: Decimal,
        price: Decimal | None,
        time_in_force: str,
        settlements: list[list[Any]] | None = None,
    ) -> Order:
        order = Order(
            order_id=self._new_order_id(),
            symbol=rule.symbol,
            side=side,
            execution_type=execution_type,
            settle_type=settle_type,
            size=size,
            price=price,
            time_in_force=time_in_force,
            timestamp=now_utc(),
            status="WAITING" if execution_type == "STOP" else "ORDERED",
            settlements=settlements or [],
        )
        self.orders[order.order_id] = order
        self._active[order.order_id] = order
        self.placements += 1
        last = self.last_prices[rule.symbol]
        if execution_type == "MARKET":
            if self.auto_fill_market:
                self._fill(order, order.size, last, taker=True)
        elif execution_type == "LIMIT":
            crossing = self._crosses(order, last)
            if time_in_force == "SOK" and crossing:
                self._expire(order, "EXPIRED_SOK")
            elif time_in_force in ("FAK", "FOK"):
                if crossing:
                    self._fill(order, order.size, last, taker=True)
                else:
                    self._expire(order, f"EXPIRED_{time_in_force}")
        return order

    def _finish(self, order: Order, status: str, cancel_type: str | None = None) -> None:
        """Take an order off the book for good (EXECUTED, CANCELED or EXPIRED)."""
        order.status = status
        order.cancel_type = cancel_type
        order.settlements = []
        self._active.pop(order.order_id, None)

    def _expire(self, order: Order, cancel_type: str) -> None:
        self._finish(order, "EXPIRED", cancel_type)

    # ------------------------------------------------------------------ fills
    def _fee(self, rule: SymbolRule, size: Decimal, price: Decimal, taker: bool) -> Decimal:
        rate = rule.taker_fee if taker else rule.maker_fee
        return size * price * rate

    def _fill(
        self,
        order: Order,
        size: Decimal,
        price: Decimal,
        *,
        taker: bool,
        fee: Decimal | None = None,
    ) -> int:
        """Execute `size` of `order` at `price`; return the (last) execution id."""
        rule = SYMBOLS[order.symbol]
        size = min(size, order.remaining)
        if size <= 0:
            raise ExchangeError("ERR-5122")
        if fee is None:
            fee = self._fee(rule, size, price, taker)
        stamp = now_utc()
        last_id = 0
        if not rule.is_margin:
            notional = size * price
            if order.side == "BUY":
                self.balances["JPY"] = self.balances.get("JPY", Decimal(0)) - notional - fee
                self.balances[rule.asset] = self.balances.get(rule.asset, Decimal(0)) + size
            else:
                self.balances[rule.asset] = self.balances.get(rule.asset, Decimal(0)) - size
                self.balances["JPY"] = self.balances.get("JPY", Decimal(0)) + notional - fee
            last_id = self._record(order, None, size, price, Decimal(0), fee, stamp)
        elif order.settle_type == "OPEN":
            position_id = self._position_of_order.get(order.order_id)
            position = self.positions.get(position_id) if position_id is not None else None
            if position is None:
                position = Position(
                    self._new_position_id(), order.symbol, order.side, size, price, stamp
                )
                self.positions[position.position_id] = position
                self._position_of_order[order.order_id] = position.position_id
            else:
                total = position.size + size
                position.price = (position.price * position.size + price * size) / total
                position.size = total
            self.balances["JPY"] = self.balances.get("JPY", Decimal(0)) - fee
            last_id = self._record(order, position.position_id, size, price, Decimal(0), fee, stamp)
        else:
            left = size
            first = True
            for settlement in order.settlements:
                if left == 0:
                    break
                take = min(settlement[1], left)
                if take == 0:
                    continue
                position = self.positions[settlement[0]]
                direction = 1 if position.side == "BUY" else -1
                loss_gain = (price - position.price) * take * direction
                part_fee = fee if first else Decimal(0)
                first = False
                position.size -= take
                settlement[1] -= take
                left -= take
                if position.size == 0:
                    del self.positions[position.position_id]
                self.balances["JPY"] = self.balances.get("JPY", Decimal(0)) + loss_gain - part_fee
                last_id = self._record(
                    order, settlement[0], take, price, loss_gain, part_fee, stamp
                )
        order.executed_size += size
        if order.remaining == 0:
            self._finish(order, "EXECUTED")
        elif order.status == "WAITING":
            order.status = "ORDERED"
        return last_id

    def _record(
        self,
        order: Order,
        position_id: int | None,
        size: Decimal,
        price: Decimal,
        loss_gain: Decimal,
        fee: Decimal,
        stamp: datetime,
    ) -> int:
        execution = Execution(
            self._new_execution_id(),
            order.order_id,
            position_id,
            order.symbol,
            order.side,
            order.settle_type,
            size,
            price,
            loss_gain,
            fee,
            stamp,
        )
        self.executions.append(execution)
        self._executions_of.setdefault(order.order_id, []).append(execution)
        self._execution_by_id[execution.execution_id] = execution
        return execution.execution_id

    def fill(
        self,
        order_id: int | str,
        size: Decimal | str,
        price: Decimal | str | None = None,
        fee: Decimal | str | None = None,
    ) -> str:
        """Test hook: execute part of a resting order (at its limit price or the last price)."""
        with self.lock:
            order = self.orders.get(int(order_id))
            if order is None:
                raise ExchangeError("ERR-5123")
            if not order.active:
                raise ExchangeError("ERR-5122")
            if price is None:
                price = order.price if order.execution_type == "LIMIT" else None
                if price is None:
                    price = self.last_prices[order.symbol]
            taker = order.execution_type != "LIMIT"
            fee_value = Decimal(fee) if fee is not None else None
            return str(self._fill(order, Decimal(size), Decimal(price), taker=taker, fee=fee_value))

    def set_last_price(self, symbol: str, price: Decimal | str) -> None:
        with self.lock:
            self._rule(symbol)
            self.last_prices[symbol] = Decimal(price)

    def market_trade(
        self, symbol: str, price: Decimal | str, size: Decimal | str, side: str = "BUY"
    ) -> list[str]:
        """A print at `price` for `size`: crossed resting orders fill, oldest first.

        LIMIT orders fill at their own price as makers; resting MARKET orders (auto_fill_market
        off) and triggered STOP orders fill at the print's price as takers. Returns the
        execution ids created.
        """
        with self.lock:
            self._rule(symbol)
            price = Decimal(price)
            budget = Decimal(size)
            self.last_prices[symbol] = price
            self.trades.append(Trade(symbol, side, budget, price, now_utc()))
            stats = self._stats.setdefault(symbol, [price, price, Decimal(0)])
            stats[0] = max(stats[0], price)
            stats[1] = min(stats[1], price)
            stats[2] += budget
            created: list[str] = []
            for order in list(self._active.values()):
                if budget <= 0:
                    break
                if order.symbol != symbol or not order.active or not self._crosses(order, price):
                    continue
                take = min(order.remaining, budget)
                if order.execution_type == "LIMIT":
                    assert order.price is not None
                    created.append(str(self._fill(order, take, order.price, taker=False)))
                else:
                    created.append(str(self._fill(order, take, price, taker=True)))
                budget -= take
            return created

    # ------------------------------------------------------------------ cancels
    def cancel_order(self, order_id: Any) -> None:
        with self.lock:
            order = self.orders.get(_order_id(order_id))
            if order is None:
                raise ExchangeError("ERR-5123")
            if not order.active:
                raise ExchangeError("ERR-5122")
            self._finish(order, "CANCELED", "USER")

    def cancel_orders(self, order_ids: Any) -> dict[str, Any]:
        if not isinstance(order_ids, list) or not order_ids or len(order_ids) > 10:
            raise ExchangeError("ERR-5106")
        success: list[int] = []
        failed: list[dict[str, Any]] = []
        with self.lock:
            for raw in order_ids:
                try:
                    self.cancel_order(raw)
                    success.append(_order_id(raw))
                except ExchangeError as error:
                    failed.append(
                        {
                            "message_code": error.code,
                            "message_string": error.message,
                            "orderId": raw,
                        }
                    )
        return {"success": success, "failed": failed}

    def cancel_bulk(self, body: dict[str, Any]) -> list[int]:
        symbols = body.get("symbols")
        if not isinstance(symbols, list) or not symbols:
            raise ExchangeError("ERR-5106")
        side = body.get("side")
        settle_type = body.get("settleType")
        with self.lock:
            for symbol in symbols:
                self._rule(symbol)
            cancelled: list[int] = []
            ordered = list(self._active.values())
            if body.get("desc"):
                ordered.reverse()
            for order in ordered:
                if (
                    order.active
                    and order.symbol in symbols
                    and side in (None, order.side)
                    and settle_type in (None, order.settle_type)
                ):
                    self.cancel_order(order.order_id)
                    cancelled.append(order.order_id)
            return cancelled

    def change_order(self, body: dict[str, Any]) -> None:
        with self.lock:
            order = self.orders.get(_order_id(body.get("orderId")))
            if order is None:
                raise ExchangeError("ERR-5123")
            if not order.active or order.execution_type == "MARKET":
                raise ExchangeError("ERR-5122")
            order.price = self._price(
                SYMBOLS[order.symbol], order.execution_type, body.get("price")
            )

    # ------------------------------------------------------------------ reads
    def get_orders(self, order_ids: list[int]) -> list[dict[str, Any]]:
        with self.lock:
            return [self.orders[i].to_json() for i in order_ids if i in self.orders]

    def active_orders(self, symbol: str | None, page: int, count: int) -> list[dict[str, Any]]:
        """One page, newest first, as GMO lists them."""
        with self.lock:
            rows = (o for o in reversed(self._active.values()) if symbol in (None, o.symbol))
            return [o.to_json() for o in _slice(rows, page, count)]

    def executions_of_order(self, order_id: int) -> list[dict[str, Any]]:
        with self.lock:
            return [e.to_json() for e in self._executions_of.get(order_id, ())]

    def executions_by_id(self, execution_ids: list[int]) -> list[dict[str, Any]]:
        with self.lock:
            found = (self._execution_by_id.get(i) for i in execution_ids)
            return [e.to_json() for e in found if e is not None]

    def latest_executions(self, symbol: str | None, page: int, count: int) -> list[dict[str, Any]]:
        """One page, newest first."""
        with self.lock:
            rows = (e for e in reversed(self.executions) if symbol in (None, e.symbol))
            return [e.to_json() for e in _slice(rows, page, count)]

    def open_positions(self, symbol: str | None) -> list[dict[str, Any]]:
        with self.lock:
            rows = []
            for p in sorted(self.positions.values(), key=lambda p: p.position_id):
                if symbol not in (None, p.symbol):
                    continue
                last = self.last_prices[p.symbol]
                direction = 1 if p.side == "BUY" else -1
                rows.append(
                    {
                        "positionId": p.position_id,
                        "symbol": p.symbol,
                        "side": p.side,
                        "size": fmt(p.size),
                        "orderdSize": fmt(self._reserved_on(p.position_id)),
                        "price": fmt(p.price),
                        "lossGain": fmt((last - p.price) * p.size * direction),
                        "leverage": p.leverage,
                        "losscutPrice": "0",
                        "timestamp": iso(p.timestamp),
                    }
                )
            return rows

    def position_summary(self, symbol: str | None) -> list[dict[str, Any]]:
        with self.lock:
            groups: dict[tuple[str, str], list[Position]] = {}
            for p in self.positions.values():
                if symbol in (None, p.symbol):
                    groups.setdefault((p.symbol, p.side), []).append(p)
            rows = []
            for (sym, side), positions in sorted(groups.items()):
                quantity = sum((p.size for p in positions), Decimal(0))
                ordered = sum((self._reserved_on(p.position_id) for p in positions), Decimal(0))
                average = sum((p.price * p.size for p in positions), Decimal(0)) / quantity
                direction = 1 if side == "BUY" else -1
                gain = (self.last_prices[sym] - average) * quantity * direction
                rows.append(
                    {
                        "averagePositionRate": fmt(average),
                        "positionLossGain": fmt(gain),
                        "side": side,
                        "sumOrderQuantity": fmt(ordered),
                        "sumPositionQuantity": fmt(quantity),
                        "symbol": sym,
                    }
                )
            return rows

    def assets(self) -> list[dict[str, Any]]:
        with self.lock:
            rows = []
            for asset, amount in self.balances.items():
                rate = Decimal(1) if asset == "JPY" else self.last_prices.get(asset, Decimal(0))
                rows.append(
                    {
                        "amount": fmt(amount),
                        "available": fmt(self._available(asset)),
                        "conversionRate": fmt(rate),
                        "symbol": asset,
                    }
                )
            return rows

    def margin(self) -> dict[str, str]:
        """A plausible leverage account: JPY plus open P&L against 2x margin on positions."""
        with self.lock:
            profit_loss = Decimal(0)
            margin = Decimal(0)
            for p in self.positions.values():
                direction = 1 if p.side == "BUY" else -1
                profit_loss += (self.last_prices[p.symbol] - p.price) * p.size * direction
                margin += p.price * p.size / 2
            jpy = self.balances.get("JPY", Decimal(0))
            actual = jpy + profit_loss
            available = actual - margin
            ratio = (actual / margin * 100).quantize(Decimal("0.1")) if margin else Decimal(0)
            return {
                "actualProfitLoss": fmt(actual),
                "availableAmount": fmt(available),
                "margin": fmt(margin),
                "marginCallStatus": "NORMAL",
                "marginRatio": fmt(ratio),
                "profitLoss": fmt(profit_loss),
                "transferableAmount": fmt(max(available, Decimal(0))),
            }

    def ticker(self, symbol: str | None) -> list[dict[str, Any]]:
        with self.lock:
            symbols = [symbol] if symbol else list(SYMBOLS)
            rows = []
            stamp = iso(now_utc())
            for sym in symbols:
                rule = self._rule(sym)
                last = self.last_prices[sym]
                high, low, volume = self._stats.get(sym, (last, last, Decimal(0)))
                rows.append(
                    {
                        "ask": fmt(last + rule.tick_size),
                        "bid": fmt(last - rule.tick_size),
                        "high": fmt(high),
                        "last": fmt(last),
                        "low": fmt(low),
                        "symbol": sym,
                        "timestamp": stamp,
                        "volume": fmt(volume),
                    }
                )
            return rows

    def orderbook(self, symbol: str | None) -> dict[str, Any]:
        with self.lock:
            rule = self._rule(symbol)
            last = self.last_prices[rule.symbol]
            depth = rule.max_size
            return {
                "asks": [{"price": fmt(last + rule.tick_size), "size": fmt(depth)}],
                "bids": [{"price": fmt(last - rule.tick_size), "size": fmt(depth)}],
                "symbol": rule.symbol,
            }

    def public_trades(self, symbol: str | None, page: int, count: int) -> list[dict[str, Any]]:
        """One page of the prints, newest first."""
        with self.lock:
            rule = self._rule(symbol)
            rows = (t for t in reversed(self.trades) if t.symbol == rule.symbol)
            return [
                {
                    "price": fmt(t.price),
                    "side": t.side,
                    "size": fmt(t.size),
                    "timestamp": iso(t.timestamp),
                }
                for t in _slice(rows, page, count)
            ]

    @staticmethod
    def symbols() -> list[dict[str, str]]:
        return [
            {
                "symbol": r.symbol,
                "minOrderSize": fmt(r.min_size),
                "maxOrderSize": fmt(r.max_size),
                "sizeStep": fmt(r.size_step),
                "tickSize": fmt(r.tick_size),
                "takerFee": fmt(r.taker_fee),
                "makerFee": fmt(r.maker_fee),
            }
            for r in SYMBOLS.values()
        ]
