"""The Broker port over any ccxt exchange (sync client), chosen by ccxt id.

What the engine needs from this adapter and ccxt does not give by itself:

* errors typed by what to do next (`_translate`), not by where they came from;
* a placement that is never sent twice: a timeout or dropped connection on `create_order` is
  answered by looking the order up by our client order id, never by re-sending;
* reads that ride out short outages (`read_attempts` tries, exponential backoff);
* numbers as `Decimal` made from `str(x)`: ccxt hands out floats, and `Decimal(0.1)` is not 0.1;
* engine symbols (`BTC`, `BTC_JPY`) mapped to ccxt's unified ones (`BTC/JPY`);
* order ids without a symbol: many exchanges (Binance) need the symbol for every order call,
  so the adapter remembers which symbol each order id belongs to and, for an id it has not
  seen, asks the symbols it knows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import ccxt

from trading_engine.domain.values import CancelType, OrderStatus, OrderType, Side, TimeInForce
from trading_engine.ports.broker import (
    Balance,
    BrokerError,
    BrokerFatal,
    ExchangeExecution,
    ExchangeOrder,
    ExchangePosition,
    OrderNotCancelable,
    OrderNotFound,
    OrderRejected,
    OrderRequest,
    PlacementUnknown,
    RetryLater,
    TradingPaused,
)

T = TypeVar("T")
ZERO = Decimal(0)

# Exchange-specific settings so that loading markets touches only the spot market list.
_DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {
        "defaultType": "spot",
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
    },
}
# The parameter each exchange reads our client order id from (ccxt's unified name otherwise).
_CLIENT_ID_PARAM = {"binance": "newClientOrderId"}
# Exchanges whose fetch_order can look an order up by client order id alone (one request).
_FETCH_BY_CLIENT_ID = {"binance": "origClientOrderId"}
_TIME_IN_FORCE = {TimeInForce.FAS: "GTC", TimeInForce.FAK: "IOC", TimeInForce.FOK: "FOK"}
_TRANSIENT = (ccxt.DDoSProtection, ccxt.RateLimitExceeded, ccxt.ExchangeNotAvailable)


def to_decimal(value: object) -> Decimal:
    """ccxt's floats (or strings) as an exact Decimal: via `str`, so 0.1 stays 0.1 (and
    `4900000.0` reads as 4900000)."""
    if value is None or value == "":
        return ZERO
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if number.is_finite() and number == number.to_integral_value():
        return number.quantize(Decimal(1))
    return number


def plain(number: Decimal) -> str:
    """A Decimal as ccxt should receive it: fixed-point text (never `1E+1`), no float."""
    return format(number, "f")


def _optional_decimal(value: object) -> Decimal | None:
    return None if value is None or value == "" else to_decimal(value)


def _timestamp(millis: object) -> datetime:
    """ccxt timestamps are epoch milliseconds; an exchange that omits one gets `now`."""
    if isinstance(millis, int | float):
        return datetime.fromtimestamp(millis / 1000, tz=UTC)
    return datetime.now(tz=UTC)


def default_unified(symbol: str) -> str:
    """`BTC` -> `BTC/JPY`, `BTC_JPY` -> `BTC/JPY`; already-unified symbols pass through."""
    if "/" in symbol:
        return symbol
    base, _, quote = symbol.partition("_")
    return f"{base}/{quote or 'JPY'}"


def is_ambiguous(error: Exception) -> bool:
    """True when a placement may have reached the exchange: a timeout, a dropped connection,
    a garbled or "unknown status" answer. A definite refusal (rate limit, 5xx busy,
    maintenance, nonce) is not ambiguous: the exchange said it did not act."""
    if isinstance(error, (*_TRANSIENT, ccxt.InvalidNonce)):
        return False
    return isinstance(error, ccxt.OperationFailed)


def translate(error: Exception, exchange: str, *, placing: bool = False) -> BrokerError:
    """One ccxt exception as the port's error, by what the engine must do about it.

    Order matters: ccxt's classes nest (OrderNotFound is an InvalidOrder, OnMaintenance an
    ExchangeNotAvailable, which is a NetworkError)."""
    code, message = type(error).__name__, str(error)
    kind: type[BrokerError]
    if isinstance(error, ccxt.OrderNotFound):
        kind = OrderNotFound
    elif isinstance(error, ccxt.OnMaintenance | ccxt.MarketClosed):
        kind = TradingPaused
    elif isinstance(error, (*_TRANSIENT, ccxt.InvalidNonce, ccxt.OperationFailed)):
        kind = RetryLater  # incl. RequestTimeout / NetworkError on reads
    elif isinstance(error, ccxt.AuthenticationError | ccxt.NotSupported | ccxt.ArgumentsRequired):
        kind = BrokerFatal  # PermissionDenied, AccountSuspended are AuthenticationErrors
    elif placing and isinstance(error, ccxt.ExchangeError):
        kind = OrderRejected  # InsufficientFunds, InvalidOrder, BadSymbol, BadRequest, ...
    elif isinstance(error, ccxt.InvalidOrder):
        kind = OrderNotFound  # on an existing order: "invalid" is how some say "not live"
    else:
        kind = BrokerFatal  # a request the engine should never send, or an unknown failure
    return kind(message, code=code, exchange=exchange)


def order_status(raw: dict[str, Any]) -> tuple[OrderStatus, CancelType | None, bool]:
    """ccxt's unified status as (engine status, cancel type, cancel pending)."""
    status = raw.get("status")
    filled = to_decimal(raw.get("filled"))
    live = OrderStatus.PARTIALLY_FILLED if filled > ZERO else OrderStatus.NEW
    if status == "closed":
        return OrderStatus.FILLED, None, False
    if status == "canceled":
        return OrderStatus.CANCELED, CancelType.USER, False
    if status == "expired":
        return OrderStatus.CANCELED, CancelType.EXPIRED, False
    if status == "rejected":
        return OrderStatus.REJECTED, None, False
    return live, None, status == "canceling"


def order_type(raw_type: object) -> OrderType:
    text = str(raw_type or "").lower()
    if text == "market":
        return OrderType.MARKET
    if "stop" in text or "take_profit" in text:
        return OrderType.STOP
    return OrderType.LIMIT


class CcxtBroker:
    """One account on one ccxt exchange (spot), behind the Broker port."""

    def __init__(
        self,
        exchange_id: str,
        api_key: str,
        api_secret: str,
        *,
        urls: dict[str, str] | None = None,
        timeout_ms: int = 10000,
        symbol_map: dict[str, str] | None = None,
        read_attempts: int = 3,
        backoff_seconds: float = 0.2,
        lookup_attempts: int = 2,
        options: dict[str, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = exchange_id
        self._symbol_map = dict(symbol_map or {})
        self._engine_symbols: dict[str, str] = {}  # unified -> engine; the first name wins
        for engine, unified in self._symbol_map.items():
            self._engine_symbols.setdefault(unified, engine)
        self._read_attempts = max(1, read_attempts)
        self._lookup_attempts = max(1, lookup_attempts)
        self._backoff = backoff_seconds
        self._sleep = sleep
        self._order_symbols: dict[str, str] = {}  # exchange order id -> unified symbol
        self._exchange = _make_exchange(exchange_id, api_key, api_secret, urls, timeout_ms)
        self._exchange.options.update({**_DEFAULT_OPTIONS.get(exchange_id, {}), **(options or {})})

    # -- symbols ------------------------------------------------------------------------
    def _unified(self, symbol: str) -> str:
        unified = self._symbol_map.get(symbol) or default_unified(symbol)
        self._engine_symbols.setdefault(unified, symbol)
        return unified

    def _engine(self, unified: str) -> str:
        return self._engine_symbols.get(unified, unified)

    # -- calling ccxt -------------------------------------------------------------------
    def _read(self, call: Callable[..., T], *args: Any) -> T:
        """A read (or an idempotent cancel): transient failures are retried with exponential
        backoff; after `read_attempts` tries they surface as RetryLater."""
        for attempt in range(self._read_attempts):
            try:
                return call(*args)
            except ccxt.BaseError as error:
                translated = translate(error, self.name)
                if not isinstance(translated, RetryLater) or attempt + 1 >= self._read_attempts:
                    raise translated from error
                self._sleep(self._backoff * 2**attempt)
        raise AssertionError("unreachable")

    # -- placing ------------------------------------------------------------------------
    def place_order(self, request: OrderRequest) -> str:
        symbol = self._unified(request.symbol)
        # Markets load before the order is sent, so a failure there is plainly retryable.
        self._read(self._exchange.load_markets)
        kind, price, params = self._order_arguments(request)
        for attempt in range(self._read_attempts):
            try:
                raw = self._exchange.create_order(
                    symbol, kind, request.side.value.lower(), plain(request.size), price, params
                )
                break
            except ccxt.DDoSProtection as error:
                # Refused before the exchange looked at the order: safe to send again.
                if attempt + 1 >= self._read_attempts:
                    raise translate(error, self.name, placing=True) from error
                self._sleep(self._backoff * 2**attempt)
            except ccxt.BaseError as error:
                if is_ambiguous(error):
                    return self._resolve_placement(symbol, request.client_order_id, error)
                raise translate(error, self.name, placing=True) from error
        order_id = str(raw["id"])
        self._order_symbols[order_id] = symbol
        return order_id

    def _order_arguments(self, request: OrderRequest) -> tuple[str, str | None, dict[str, Any]]:
        """(ccxt order type, price, params) for one request; our id rides in params."""
        params: dict[str, Any] = {
            _CLIENT_ID_PARAM.get(self.name, "clientOrderId"): request.client_order_id
        }
        price = None if request.price is None else plain(request.price)
        if request.order_type is OrderType.STOP:
            params["triggerPrice"] = price
            return "market", None, params
        if request.time_in_force is TimeInForce.SOK:
            params["postOnly"] = True
        elif request.time_in_force is not None and request.order_type is OrderType.LIMIT:
            params["timeInForce"] = _TIME_IN_FORCE[request.time_in_force]
        kind = "market" if request.order_type is OrderType.MARKET else "limit"
        return kind, (None if kind == "market" else price), params

    def _resolve_placement(self, symbol: str, client_order_id: str, error: Exception) -> str:
        """The answer to a placement was lost. Look for the order by our client order id a
        few times (it may take a moment to show); found -> its id, else PlacementUnknown."""
        for attempt in range(self._lookup_attempts):
            if attempt:
                self._sleep(self._backoff * 2**attempt)
            try:
                found = self._find_by_client_id(symbol, client_order_id)
            except ccxt.BaseError:
                continue
            if found is not None:
                self._order_symbols[found] = symbol
                return found
        raise PlacementUnknown(
            f"no answer to the placement of {client_order_id} and no order with that client "
            f"order id found: {error}",
            code=type(error).__name__,
            exchange=self.name,
        ) from error

    def _find_by_client_id(self, symbol: str, client_order_id: str) -> str | None:
        """One lookup: by client id directly where the exchange can, else in open and then
        closed orders."""
        param = _FETCH_BY_CLIENT_ID.get(self.name)
        if param is not None:
            try:
                return str(self._exchange.fetch_order(None, symbol, {param: client_order_id})["id"])
            except ccxt.OrderNotFound:
                return None
        candidates = list(self._exchange.fetch_open_orders(symbol))
        if self._exchange.has.get("fetchClosedOrders"):
            candidates += self._exchange.fetch_closed_orders(symbol)
        for raw in candidates:
            if raw.get("clientOrderId") == client_order_id:
                return str(raw["id"])
        return None

    def find_order(
        self, request: OrderRequest, placed_after: datetime, exclude: Collection[str] = ()
    ) -> ExchangeOrder | None:
        """By our client order id, which the exchange keeps."""
        symbol = self._unified(request.symbol)
        found = self._find_by_client_id(symbol, request.client_order_id)
        if found is None or found in exclude:
            return None
        self._order_symbols[found] = symbol
        return self.fetch_order(found)

    # -- orders -------------------------------------------------------------------------
    def cancel_order(self, exchange_order_id: str) -> None:
        symbol = self._symbol_of(exchange_order_id)
        try:
            self._read(self._exchange.cancel_order, exchange_order_id, symbol)
        except OrderNotFound as error:
            # Exchanges say "unknown order" (Binance -2011) or "invalid order" for an order
            # that is already done: read it to tell "not cancelable" from "not there".
            order = self.fetch_order(exchange_order_id)
            if order.status.is_terminal:
                raise OrderNotCancelable(
                    f"order {exchange_order_id} is already {order.status.value}",
                    code=error.code,
                    exchange=self.name,
                ) from error
            raise RetryLater(error.message, code=error.code, exchange=self.name) from error

    def fetch_order(self, exchange_order_id: str) -> ExchangeOrder:
        return self._to_order(self._raw_order(exchange_order_id))

    def fetch_orders(self, exchange_order_ids: Sequence[str]) -> Sequence[ExchangeOrder]:
        # ccxt has no common "several orders by id" call: one request each, as fetch_order.
        found: list[ExchangeOrder] = []
        for exchange_order_id in exchange_order_ids:
            try:
                found.append(self.fetch_order(exchange_order_id))
            except OrderNotFound:
                continue
        return found

    def _symbol_of(self, exchange_order_id: str) -> str:
        known = self._order_symbols.get(exchange_order_id)
        return known or str(self._raw_order(exchange_order_id)["symbol"])

    def _raw_order(self, exchange_order_id: str) -> dict[str, Any]:
        """The order as ccxt parses it, finding its symbol if this adapter has not seen it."""
        self._read(self._exchange.load_markets)
        known = self._order_symbols.get(exchange_order_id)
        candidates = [known] if known else self._candidate_symbols()
        for symbol in candidates:
            try:
                raw = self._read(self._exchange.fetch_order, exchange_order_id, symbol)
            except OrderNotFound:
                continue
            self._order_symbols[exchange_order_id] = symbol
            return raw
        raise OrderNotFound(f"order {exchange_order_id} not found", exchange=self.name)

    def _candidate_symbols(self) -> list[str]:
        """Symbols an unseen order id may belong to: the mapped ones and any traded here."""
        seen = dict.fromkeys([*self._symbol_map.values(), *self._engine_symbols])
        return [s for s in seen if s in self._exchange.markets]

    def fetch_executions(self, exchange_order_id: str) -> Sequence[ExchangeExecution]:
        symbol = self._symbol_of(exchange_order_id)
        if self._exchange.has.get("fetchOrderTrades"):
            trades = self._read(self._exchange.fetch_order_trades, exchange_order_id, symbol)
        else:
            trades = self._read(self._exchange.fetch_my_trades, symbol)
        mine = [t for t in trades if str(t.get("order")) == exchange_order_id]
        return self._to_executions(mine)

    def open_orders(self, symbol: str) -> Sequence[ExchangeOrder]:
        unified = self._unified(symbol)
        raws = self._read(self._exchange.fetch_open_orders, unified)
        for raw in raws:
            self._order_symbols[str(raw["id"])] = unified
        return [self._to_order(raw) for raw in raws]

    def recent_executions(self, symbol: str) -> Sequence[ExchangeExecution]:
        unified = self._unified(symbol)
        return self._to_executions(self._read(self._exchange.fetch_my_trades, unified))

    def balances(self) -> Sequence[Balance]:
        raw = self._read(self._exchange.fetch_balance)
        totals, free = raw.get("total") or {}, raw.get("free") or {}
        return [
            Balance(asset=asset, amount=to_decimal(total), available=to_decimal(free.get(asset)))
            for asset, total in sorted(totals.items())
            if total is not None
        ]

    def positions(self, symbol: str) -> Sequence[ExchangePosition]:
        """Spot markets hold no positions; derivatives use ccxt's fetch_positions."""
        unified = self._unified(symbol)
        self._read(self._exchange.load_markets)
        market = self._exchange.markets.get(unified)
        if market is None or market.get("spot", True):
            return []
        raws = self._read(self._exchange.fetch_positions, [unified])
        return [
            ExchangePosition(
                position_id=str(raw.get("id") or f"{unified}:{raw.get('side')}"),
                symbol=symbol,
                side=Side.BUY if raw.get("side") == "long" else Side.SELL,
                size=to_decimal(raw.get("contracts")),
                price=to_decimal(raw.get("entryPrice")),
            )
            for raw in raws
            if to_decimal(raw.get("contracts")) > ZERO
        ]

    # -- parsing ------------------------------------------------------------------------
    def _to_order(self, raw: dict[str, Any]) -> ExchangeOrder:
        status, cancel_type, pending = order_status(raw)
        kind = order_type(raw.get("type"))
        info = raw.get("info")
        raw_status = info.get("status") if isinstance(info, dict) else None
        return ExchangeOrder(
            exchange_order_id=str(raw["id"]),
            symbol=self._engine(raw["symbol"]),
            side=Side.parse(raw["side"]),
            order_type=kind,
            size=to_decimal(raw.get("amount")),
            price=None if kind is OrderType.MARKET else _optional_decimal(raw.get("price")),
            status=status,
            executed_size=to_decimal(raw.get("filled")),
            timestamp=_timestamp(raw.get("timestamp")),
            cancel_type=cancel_type,
            cancel_pending=pending,
            raw_status=str(raw_status or raw.get("status") or ""),
            client_order_id=str(raw.get("clientOrderId") or ""),
        )

    def _to_executions(self, trades: Sequence[dict[str, Any]]) -> list[ExchangeExecution]:
        executions = [
            ExchangeExecution(
                execution_id=str(t["id"]),
                exchange_order_id=str(t.get("order")),
                symbol=self._engine(t["symbol"]),
                side=Side.parse(t["side"]),
                price=to_decimal(t.get("price")),
                size=to_decimal(t.get("amount")),
                fee=to_decimal((t.get("fee") or {}).get("cost")),
                timestamp=_timestamp(t.get("timestamp")),
            )
            for t in trades
        ]
        return sorted(executions, key=lambda e: (e.timestamp, e.execution_id))


def _make_exchange(
    exchange_id: str, api_key: str, api_secret: str, urls: dict[str, str] | None, timeout: int
) -> Any:
    """A sync ccxt client; `urls` replaces entries of `exchange.urls['api']` (tests point
    them at a loopback stand-in)."""
    factory = getattr(ccxt, exchange_id, None)
    if factory is None:
        raise BrokerFatal(f"ccxt has no exchange {exchange_id!r}", exchange=exchange_id)
    exchange = factory(
        {"apiKey": api_key, "secret": api_secret, "enableRateLimit": True, "timeout": timeout}
    )
    if urls:
        api = exchange.urls.get("api")
        exchange.urls["api"] = {**api, **urls} if isinstance(api, dict) else dict(urls)
    return exchange
