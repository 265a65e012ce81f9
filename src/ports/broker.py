"""The broker port: what the execution module needs from an exchange (GMO, ccxt, simulated).

Errors are typed by what the engine must do about them, not by where they came from:
`OrderRejected` (final: record REJECTED), `RetryLater` (back off and retry), `TradingPaused`
(maintenance / pre-open: stop sending, retry later), `BrokerFatal` (auth or a bug: stop and
alert), `OrderNotFound`, and `PlacementUnknown` (the request may or may not have reached the
exchange: never re-send blindly; reconcile).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from trading_engine.domain.market import Trade
from trading_engine.domain.models import OHLCV
from trading_engine.domain.values import CancelType, OrderStatus, OrderType, Side, TimeInForce


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One order to place. `client_order_id` is ours (the engine's order id)."""

    client_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    size: Decimal
    price: Decimal | None = None
    time_in_force: TimeInForce | None = None
    # GMO leverage symbols: OPEN opens a position, CLOSE settles existing ones (closeBulkOrder)
    settle: str = "OPEN"


@dataclass(frozen=True, slots=True)
class ExchangeOrder:
    exchange_order_id: str
    symbol: str
    side: Side
    order_type: OrderType
    size: Decimal
    price: Decimal | None
    status: OrderStatus  # already mapped to the engine's statuses
    executed_size: Decimal
    timestamp: datetime
    cancel_type: CancelType | None = None
    cancel_pending: bool = False  # GMO's CANCELLING
    raw_status: str = ""
    client_order_id: str = ""  # ours, where the exchange keeps it (ccxt, simulated; not GMO)
    settle: str = ""  # GMO leverage symbols: OPEN or CLOSE


@dataclass(frozen=True, slots=True)
class ExchangeExecution:
    execution_id: str
    exchange_order_id: str
    symbol: str
    side: Side
    price: Decimal
    size: Decimal
    fee: Decimal
    timestamp: datetime
    settle: str = ""  # GMO leverage symbols: OPEN or CLOSE


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    amount: Decimal
    available: Decimal


@dataclass(frozen=True, slots=True)
class ExchangePosition:
    position_id: str
    symbol: str
    side: Side
    size: Decimal
    price: Decimal


class BrokerError(Exception):
    def __init__(self, message: str, code: str = "", exchange: str = "") -> None:
        self.code, self.message, self.exchange = code, message, exchange
        super().__init__(f"{exchange} {code}: {message}".strip() if code else message)


class OrderRejected(BrokerError):
    """The exchange refused the order (funds, size, precision, ...): final."""


class RetryLater(BrokerError):
    """Busy, rate-limited, or a transient server error: back off and retry."""


class TradingPaused(BrokerError):
    """Maintenance or pre-open: stop sending orders until the exchange is open again."""


class BrokerFatal(BrokerError):
    """Authentication, signature or a request the engine should never send: stop, alert."""


class OrderNotFound(BrokerError):
    """The exchange does not know this order id (now)."""


class OrderNotCancelable(BrokerError):
    """The order is in a state the exchange will not cancel (already done, or changing): re-read
    it (GMO ERR-5122)."""


class PlacementUnknown(BrokerError):
    """The placement timed out or the connection dropped: it may exist. Look it up; never
    re-send blindly."""


class Broker(Protocol):
    """One exchange account. Every method may raise `RetryLater`, `TradingPaused` or
    `BrokerFatal`; reads retry transient failures themselves before raising `RetryLater`."""

    name: str

    def place_order(self, request: OrderRequest) -> str:
        """Send the order once; returns the exchange's order id. Raises `OrderRejected` (final,
        with the exchange's code), or `PlacementUnknown` when it cannot tell whether the order
        exists; it never sends the same request twice."""
        ...

    def find_order(
        self, request: OrderRequest, placed_after: datetime, exclude: Collection[str] = ()
    ) -> ExchangeOrder | None:
        """The order `request` created, if the exchange has it (by client order id where the
        exchange keeps one, else by matching its terms among orders placed after
        `placed_after`, skipping the ids in `exclude`). `None` if absent or ambiguous."""
        ...

    def cancel_order(self, exchange_order_id: str) -> None:
        """Ask for a cancel; the order's end is seen by `fetch_order`. Raises `OrderNotFound`
        or `OrderNotCancelable`."""
        ...

    def fetch_order(self, exchange_order_id: str) -> ExchangeOrder:
        """The order as the exchange sees it now. Raises `OrderNotFound`."""
        ...

    def fetch_orders(self, exchange_order_ids: Sequence[str]) -> Sequence[ExchangeOrder]:
        """Several orders at once (GMO answers up to 10 per request, so a poll of many live
        orders costs a tenth of the rate limit). Orders the exchange does not know are
        absent from the answer, in any order."""
        ...

    def fetch_executions(self, exchange_order_id: str) -> Sequence[ExchangeExecution]:
        """Every execution of the order so far, oldest first (empty if none)."""
        ...

    def open_orders(self, symbol: str) -> Sequence[ExchangeOrder]:
        """The account's live orders on `symbol` (all pages)."""
        ...

    def recent_executions(self, symbol: str) -> Sequence[ExchangeExecution]:
        """The account's latest executions on `symbol`, for reconciliation."""
        ...

    def balances(self) -> Sequence[Balance]: ...

    def positions(self, symbol: str) -> Sequence[ExchangePosition]:
        """Open margin positions on `symbol` (empty on spot)."""
        ...


@dataclass(frozen=True, slots=True)
class PrivateEvents:
    """What an exchange's private stream pushes about the account (GMO's `executionEvents`
    and `orderEvents`): its fills, oldest first, and the orders whose state changed, as
    they now are."""

    executions: Sequence[ExchangeExecution] = ()
    orders: Sequence[ExchangeOrder] = ()


class MarketSimulator(Protocol):
    """A simulated venue that is shown the market as it happens (backtests, paper runs)."""

    def observe_bar(self, bar: OHLCV) -> None: ...

    def observe_trade(self, trade: Trade) -> None: ...

    def open_private_stream(self) -> None:
        """From now on, keep what a private stream would push, until taken."""
        ...

    def take_private_events(self) -> PrivateEvents:
        """What was pushed since the last call (nothing unless the stream is open)."""
        ...
