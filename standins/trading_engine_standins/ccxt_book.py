"""The account behind the Binance spot stand-in: orders, trades and balances in memory.

Answers are Binance's own JSON shapes (`/api/v3/order`, `/openOrders`, `/allOrders`,
`/myTrades`, `/account`) with numbers as 8-place strings, so ccxt's real parser reads them.
Rules kept deliberately small: LIMIT orders rest until `market_trade` crosses them and fill
at their own limit price (the maker's price), oldest first; MARKET orders fill in full on
placement at the last price; IOC / FOK limits find no liquidity and expire at once; funds are
locked while an order rests. Errors are `BinanceError(http_status, code, msg)` with Binance's
codes and messages, the ones ccxt's `binance.exceptions` table maps.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

ZERO = Decimal(0)
QUOTE = "JPY"
MARKETS = {"BTCJPY": ("BTC", "JPY"), "XRPJPY": ("XRP", "JPY")}
STEP = {"BTCJPY": ("0.00000001", "1.00000000"), "XRPJPY": ("0.01000000", "0.00100000")}
START_BALANCES = {"JPY": Decimal(100_000_000), "BTC": Decimal(10), "XRP": Decimal(100_000)}
START_PRICES = {"BTCJPY": Decimal(5_000_000), "XRPJPY": Decimal(100)}
INSUFFICIENT = "Account has insufficient balance for requested action."


class BinanceError(Exception):
    """An error answer: HTTP status plus Binance's `{"code": ..., "msg": ...}` body."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def fmt(number: Decimal) -> str:
    """Binance prints every number as a string with 8 places."""
    return f"{number:.8f}"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class StandinOrder:
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    order_type: str
    time_in_force: str
    price: Decimal
    quantity: Decimal
    time_ms: int
    executed: Decimal = ZERO
    quote: Decimal = ZERO
    status: str = "NEW"
    update_ms: int = 0

    @property
    def live(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    def to_json(self) -> dict[str, object]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": fmt(self.price),
            "origQty": fmt(self.quantity),
            "executedQty": fmt(self.executed),
            "cummulativeQuoteQty": fmt(self.quote),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.order_type,
            "side": self.side,
            "stopPrice": fmt(ZERO),
            "icebergQty": fmt(ZERO),
            "time": self.time_ms,
            "updateTime": self.update_ms or self.time_ms,
            "isWorking": True,
            "workingTime": self.time_ms,
            "origQuoteOrderQty": fmt(ZERO),
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }


@dataclass
class StandinTrade:
    trade_id: int
    order: StandinOrder
    price: Decimal
    qty: Decimal
    is_maker: bool
    time_ms: int = field(default_factory=now_ms)

    def to_json(self) -> dict[str, object]:
        return {
            "symbol": self.order.symbol,
            "id": self.trade_id,
            "orderId": self.order.order_id,
            "orderListId": -1,
            "price": fmt(self.price),
            "qty": fmt(self.qty),
            "quoteQty": fmt(self.price * self.qty),
            "commission": fmt(ZERO),
            "commissionAsset": QUOTE,
            "time": self.time_ms,
            "isBuyer": self.order.side == "BUY",
            "isMaker": self.is_maker,
            "isBestMatch": True,
        }


def _decimal(params: dict[str, str], name: str, required: bool = True) -> Decimal | None:
    text = params.get(name)
    if text is None or text == "":
        if required:
            raise BinanceError(
                400,
                -1102,
                f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
            )
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        raise BinanceError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None


class Book:
    """One account on two markets; every public method holds the lock (handler threads)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.free = dict(START_BALANCES)
        self.locked = dict.fromkeys(START_BALANCES, ZERO)
        self.last = dict(START_PRICES)
        self.orders: dict[int, StandinOrder] = {}
        self.trades: list[StandinTrade] = []
        self._next_order, self._next_trade = 1000, 500

    # -- public market data -------------------------------------------------------------
    def exchange_info(self) -> dict[str, object]:
        symbols = []
        for symbol, (base, quote) in MARKETS.items():
            step, tick = STEP[symbol]
            symbols.append(
                {
                    "symbol": symbol,
                    "status": "TRADING",
                    "baseAsset": base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
                    "icebergAllowed": False,
                    "ocoAllowed": False,
                    "quoteOrderQtyMarketAllowed": True,
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": tick,
                            "maxPrice": "1000000000.00000000",
                            "tickSize": tick,
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": step,
                            "maxQty": "900000.00000000",
                            "stepSize": step,
                        },
                    ],
                    "permissions": [],
                    "permissionSets": [["SPOT"]],
                }
            )
        return {"timezone": "UTC", "serverTime": now_ms(), "rateLimits": [], "symbols": symbols}

    # -- orders -----------------------------------------------------------------------
    def place(self, params: dict[str, str]) -> dict[str, object]:
        with self.lock:
            order = self._new_order(params)
            self._lock_funds(order)
            self.orders[order.order_id] = order
            fills: list[StandinTrade] = []
            if order.order_type == "MARKET":
                fills.append(self._fill(order, self.last[order.symbol], order.quantity, False))
            elif order.time_in_force in ("IOC", "FOK"):
                self._release(order)
                order.status = "EXPIRED"
            answer = order.to_json()
            answer["transactTime"] = order.time_ms
            answer["fills"] = [
                {
                    "price": fmt(t.price),
                    "qty": fmt(t.qty),
                    "commission": fmt(ZERO),
                    "commissionAsset": QUOTE,
                    "tradeId": t.trade_id,
                }
                for t in fills
            ]
            return answer

    def _new_order(self, params: dict[str, str]) -> StandinOrder:
        symbol = self._symbol(params)
        side, kind = params.get("side", ""), params.get("type", "")
        if side not in ("BUY", "SELL"):
            raise BinanceError(400, -1117, "Invalid side.")
        if kind not in ("LIMIT", "LIMIT_MAKER", "MARKET"):
            raise BinanceError(400, -1116, "Invalid orderType.")
        quantity = _decimal(params, "quantity")
        assert quantity is not None
        step = Decimal(STEP[symbol][0])
        if quantity <= ZERO or quantity % step != ZERO:
            raise BinanceError(400, -1013, "Filter failure: LOT_SIZE")
        price = _decimal(params, "price", required=kind != "MARKET") or ZERO
        tif = params.get("timeInForce", "GTC" if kind == "LIMIT" else "")
        if kind == "LIMIT_MAKER" and self._crosses(side, price, self.last[symbol]):
            raise BinanceError(400, -2010, "Order would immediately match and take.")
        client_id = params.get("newClientOrderId") or f"standin{self._next_order}"
        if any(o.client_order_id == client_id and o.live for o in self.orders.values()):
            raise BinanceError(400, -2010, "Duplicate order sent.")
        self._next_order += 1
        stamp = now_ms()
        return StandinOrder(
            self._next_order, client_id, symbol, side, kind, tif, price, quantity, stamp
        )

    def _lock_funds(self, order: StandinOrder) -> None:
        """Check and lock what the order may spend; refuse it (-2010) when the account
        cannot pay."""
        base, quote = MARKETS[order.symbol]
        price = order.price or self.last[order.symbol]
        asset, amount = (
            (quote, price * order.quantity)
            if order.side == "BUY"
            else (
                base,
                order.quantity,
            )
        )
        if self.free[asset] < amount:
            raise BinanceError(400, -2010, INSUFFICIENT)
        self.free[asset] -= amount
        self.locked[asset] += amount

    def _release(self, order: StandinOrder) -> None:
        """Give back what the unfilled rest of an order still locks."""
        base, quote = MARKETS[order.symbol]
        rest = order.quantity - order.executed
        price = order.price or self.last[order.symbol]
        asset, amount = (quote, price * rest) if order.side == "BUY" else (base, rest)
        self.locked[asset] -= amount
        self.free[asset] += amount

    def _fill(self, order: StandinOrder, price: Decimal, qty: Decimal, maker: bool) -> StandinTrade:
        base, quote = MARKETS[order.symbol]
        locked_price = order.price or self.last[order.symbol]
        if order.side == "BUY":
            self.locked[quote] -= locked_price * qty
            self.free[quote] += (locked_price - price) * qty
            self.free[base] += qty
        else:
            self.locked[base] -= qty
            self.free[quote] += price * qty
        order.executed += qty
        order.quote += price * qty
        order.status = "FILLED" if order.executed == order.quantity else "PARTIALLY_FILLED"
        order.update_ms = now_ms()
        self._next_trade += 1
        trade = StandinTrade(self._next_trade, order, price, qty, maker)
        self.trades.append(trade)
        return trade

    @staticmethod
    def _crosses(side: str, limit: Decimal, price: Decimal) -> bool:
        return limit >= price if side == "BUY" else limit <= price

    def market_trade(self, symbol: str, price: Decimal, size: Decimal) -> None:
        """A trade prints: crossed resting orders fill at their limit, oldest first."""
        with self.lock:
            self.last[symbol] = price
            remaining = size
            for order in sorted(self.orders.values(), key=lambda o: o.order_id):
                if remaining <= ZERO:
                    break
                if order.symbol != symbol or not order.live or order.order_type == "MARKET":
                    continue
                if self._crosses(order.side, order.price, price):
                    qty = min(remaining, order.quantity - order.executed)
                    self._fill(order, order.price, qty, True)
                    remaining -= qty

    def get(self, params: dict[str, str]) -> dict[str, object]:
        with self.lock:
            return self._find(params, -2013, "Order does not exist.").to_json()

    def cancel(self, params: dict[str, str]) -> dict[str, object]:
        """Binance answers -2011 "Unknown order sent." for orders it cannot cancel, known
        (already filled / canceled) or not."""
        with self.lock:
            order = self._find(params, -2011, "Unknown order sent.")
            if not order.live:
                raise BinanceError(400, -2011, "Unknown order sent.")
            self._release(order)
            order.status, order.update_ms = "CANCELED", now_ms()
            answer = order.to_json()
            answer["origClientOrderId"] = order.client_order_id
            answer["clientOrderId"] = f"cancel{order.order_id}"
            answer["transactTime"] = order.update_ms
            return answer

    def _find(self, params: dict[str, str], code: int, msg: str) -> StandinOrder:
        symbol = self._symbol(params)
        if params.get("orderId"):
            order = self.orders.get(int(params["orderId"])) if params["orderId"].isdigit() else None
        elif params.get("origClientOrderId"):
            matches = [
                o for o in self.orders.values() if o.client_order_id == params["origClientOrderId"]
            ]
            order = matches[-1] if matches else None
        else:
            raise BinanceError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent.")
        if order is None or order.symbol != symbol:
            raise BinanceError(400, code, msg)
        return order

    def open_orders(self, params: dict[str, str]) -> list[dict[str, object]]:
        with self.lock:
            symbol = self._symbol(params)
            return [o.to_json() for o in self._by_id() if o.symbol == symbol and o.live]

    def all_orders(self, params: dict[str, str]) -> list[dict[str, object]]:
        with self.lock:
            symbol = self._symbol(params)
            return [o.to_json() for o in self._by_id() if o.symbol == symbol]

    def my_trades(self, params: dict[str, str]) -> list[dict[str, object]]:
        with self.lock:
            symbol = self._symbol(params)
            order_id = params.get("orderId")
            return [
                t.to_json()
                for t in self.trades
                if t.order.symbol == symbol
                and (order_id is None or str(t.order.order_id) == order_id)
            ]

    def account(self) -> dict[str, object]:
        with self.lock:
            balances = [
                {"asset": a, "free": fmt(self.free[a]), "locked": fmt(self.locked[a])}
                for a in self.free
            ]
        return {
            "makerCommission": 0,
            "takerCommission": 0,
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "updateTime": now_ms(),
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
        }

    def _by_id(self) -> list[StandinOrder]:
        return sorted(self.orders.values(), key=lambda o: o.order_id)

    @staticmethod
    def _symbol(params: dict[str, str]) -> str:
        symbol = params.get("symbol", "")
        if symbol not in MARKETS:
            raise BinanceError(400, -1121, "Invalid symbol.")
        return symbol
