"""The Order aggregate: one order's whole life, rebuilt from its events.

State machine (statuses as the seed's `orders.status`):

    NEW ──fill──▶ PARTIALLY_FILLED ──fill──▶ FILLED
     │  ╲                │
     │   ╲──cancel──▶ CANCELED ◀──cancel──┘     (late fills still recorded, status stays)
     └──reject──▶ REJECTED

FILLED and REJECTED are final. CANCELED is final as a status, but an execution the exchange
reports after the cancel is a fact (money moved), so it is recorded: filled size and average
price move, the status does not. A fill whose execution id was already applied is ignored:
redelivery from the exchange or a stream is normal, not an error.

Every command validates before it triggers an event, so a refused command leaves the order
exactly as it was.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from trading_engine.domain.errors import IllegalOrderTransition, InvalidValue
from trading_engine.domain.models import Execution
from trading_engine.domain.values import (
    ZERO,
    CancelType,
    Exchange,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    TimeInForce,
    aware,
    identifier,
    money_context,
    positive,
    text_of,
)

# Fixed namespace: order ids are uuid5(namespace, signal id + leg), the same on every machine.
ORDER_NAMESPACE = UUID("6f0b7c1e-3d2a-5b8e-9c4f-1a2b3c4d5e6f")


def order_id_for(signal_id: str, leg: int = 0) -> UUID:
    """The one order id a signal can ever produce (per leg: a flip may need close + open)."""
    if leg < 0:
        raise InvalidValue("leg", leg, "must not be negative")
    return uuid5(ORDER_NAMESPACE, f"{identifier('signal_id', signal_id)}#{leg}")


class Order(Aggregate):
    """An order placed because of a signal. Ids are deterministic: see `order_id_for`."""

    class Submitted(Aggregate.Created):
        signal_id: str
        leg: int
        exchange: str
        symbol: str
        side: str
        order_type: str
        time_in_force: str
        size: Decimal
        price: Decimal | None
        settle: str = "OPEN"  # GMO leverage symbols: CLOSE settles open positions

    class Accepted(Aggregate.Event):
        exchange_order_id: str

        def apply(self, order: Order) -> None:
            order.exchange_order_id = self.exchange_order_id

    class Rejected(Aggregate.Event):
        code: str
        message: str

        def apply(self, order: Order) -> None:
            order.status = OrderStatus.REJECTED
            order.reject_code = self.code
            order.reject_message = self.message

    class Filled(Aggregate.Event):
        """An execution against this order; partial or full is derived from the sizes."""

        execution_id: str
        price: Decimal
        size: Decimal
        fee: Decimal
        executed_at: datetime
        source: str = "exchange"  # how the engine learned it: poll, stream, reconciliation

        def apply(self, order: Order) -> None:
            order.execution_ids.add(self.execution_id)
            with money_context():
                order.filled_size += self.size
                order.filled_notional += self.price * self.size
                order.fees += self.fee
            order.last_fill_at = self.executed_at
            if order.status.is_live:
                order.status = (
                    OrderStatus.FILLED
                    if order.filled_size == order.size
                    else OrderStatus.PARTIALLY_FILLED
                )

    class CancelRequested(Aggregate.Event):
        reason: str

        def apply(self, order: Order) -> None:
            order.cancel_requested = True

    class Canceled(Aggregate.Event):
        cancel_type: str
        reason: str

        def apply(self, order: Order) -> None:
            order.status = OrderStatus.CANCELED
            order.cancel_type = CancelType(self.cancel_type)
            order.cancel_reason = self.reason

    def __init__(
        self,
        signal_id: str,
        leg: int,
        exchange: str,
        symbol: str,
        side: str,
        order_type: str,
        time_in_force: str,
        size: Decimal,
        price: Decimal | None,
        settle: str = "OPEN",
    ) -> None:
        self.signal_id = signal_id
        self.settle = settle
        self.leg = leg
        self.exchange = Exchange(exchange)
        self.symbol = Symbol(symbol)
        self.side = Side(side)
        self.order_type = OrderType(order_type)
        self.time_in_force = TimeInForce(time_in_force)
        self.size = size
        self.price = price
        self.status = OrderStatus.NEW
        self.exchange_order_id: str | None = None
        self.filled_size = ZERO
        self.filled_notional = ZERO
        self.fees = ZERO
        self.execution_ids: set[str] = set()
        self.last_fill_at: datetime | None = None
        self.cancel_requested = False
        self.cancel_type: CancelType | None = None
        self.cancel_reason: str | None = None
        self.reject_code: str | None = None
        self.reject_message: str | None = None

    # ----- creation -------------------------------------------------------------------------

    @classmethod
    def submit(
        cls,
        *,
        signal_id: str,
        exchange: Exchange | str,
        symbol: Symbol | str,
        side: Side | str,
        order_type: OrderType | str,
        size: object,
        price: object = None,
        time_in_force: TimeInForce | str | None = None,
        at: datetime,
        leg: int = 0,
        settle: str = "OPEN",
    ) -> Order:
        """A new order in NEW, caused by `signal_id`. Validates everything before any event."""
        kind = OrderType.parse(order_type)
        limit_price = None if price is None else positive("price", price)
        if kind is not OrderType.MARKET and limit_price is None:
            raise InvalidValue("price", price, f"a {kind} order needs a price")
        if kind is OrderType.MARKET and limit_price is not None:
            raise InvalidValue("price", price, "a MARKET order takes no price")
        tif = (
            TimeInForce.parse(time_in_force)
            if time_in_force is not None
            else (TimeInForce.FAK if kind is OrderType.MARKET else TimeInForce.FAS)
        )
        exchange_value = exchange if isinstance(exchange, Exchange) else Exchange(exchange)
        symbol_value = symbol if isinstance(symbol, Symbol) else Symbol(symbol)
        return cls._create(
            cls.Submitted,
            id=order_id_for(signal_id, leg),
            timestamp=aware("at", at),
            signal_id=identifier("signal_id", signal_id),
            leg=leg,
            exchange=exchange_value.value,
            symbol=symbol_value.value,
            side=Side.parse(side).value,
            order_type=kind.value,
            time_in_force=tif.value,
            size=positive("size", size),
            price=limit_price,
            settle=_settle(settle),
        )

    # ----- commands -------------------------------------------------------------------------

    def accept(self, exchange_order_id: str, *, at: datetime) -> bool:
        """The exchange took the order and gave it an id. Returns False if already known."""
        exchange_order_id = identifier("exchange_order_id", exchange_order_id)
        if self.status is OrderStatus.REJECTED:
            raise IllegalOrderTransition(self.id, self.status, "accept")
        if self.exchange_order_id is not None:
            if self.exchange_order_id == exchange_order_id:
                return False
            raise IllegalOrderTransition(
                self.id,
                self.status,
                "accept",
                f"already accepted as {self.exchange_order_id}, not {exchange_order_id}",
            )
        self.trigger_event(
            self.Accepted, timestamp=aware("at", at), exchange_order_id=exchange_order_id
        )
        return True

    def reject(self, code: str, message: str, *, at: datetime) -> None:
        """The exchange refused the order (GMO's ERR-xxxx code and message)."""
        if self.status is not OrderStatus.NEW:
            raise IllegalOrderTransition(self.id, self.status, "reject")
        self.trigger_event(
            self.Rejected,
            timestamp=aware("at", at),
            code=identifier("code", code),
            message=text_of(message),
        )

    def fill(
        self, execution: Execution, *, at: datetime | None = None, source: str = "exchange"
    ) -> bool:
        """Record an execution. Returns False (and changes nothing) for a redelivered one."""
        if execution.execution_id in self.execution_ids:
            return False
        if self.status is OrderStatus.REJECTED:
            raise IllegalOrderTransition(self.id, self.status, "fill")
        if execution.side is not self.side:
            raise IllegalOrderTransition(
                self.id,
                self.status,
                "fill",
                f"execution side {execution.side} on a {self.side} order",
            )
        with money_context():
            overfill = self.filled_size + execution.size > self.size
        if overfill:
            raise IllegalOrderTransition(
                self.id,
                self.status,
                "fill",
                f"overfill: filled {self.filled_size} + {execution.size} > size {self.size}",
            )
        self.trigger_event(
            self.Filled,
            timestamp=aware("at", at if at is not None else execution.executed_at),
            execution_id=execution.execution_id,
            price=execution.price,
            size=execution.size,
            fee=execution.fee,
            executed_at=execution.executed_at,
            source=text_of(source),
        )
        return True

    def request_cancel(self, reason: str, *, at: datetime) -> bool:
        """We asked the exchange to cancel. Returns False if already asked."""
        if not self.status.is_live:
            raise IllegalOrderTransition(self.id, self.status, "request_cancel")
        if self.cancel_requested:
            return False
        self.trigger_event(self.CancelRequested, timestamp=aware("at", at), reason=text_of(reason))
        return True

    def cancel(self, cancel_type: CancelType | str, reason: str = "", *, at: datetime) -> None:
        """The exchange says the order is canceled (by us, by the exchange, or expired)."""
        kind = CancelType.parse(cancel_type)
        if not self.status.is_live:
            raise IllegalOrderTransition(self.id, self.status, "cancel")
        self.trigger_event(
            self.Canceled, timestamp=aware("at", at), cancel_type=kind.value, reason=text_of(reason)
        )

    def expire(self, reason: str = "", *, at: datetime) -> None:
        """Expiry is a cancel with a reason: the order ends CANCELED / EXPIRED."""
        self.cancel(CancelType.EXPIRED, reason or "expired", at=at)

    def declare_lost(self, reason: str, *, at: datetime) -> None:
        """The exchange kept answering that it does not know this order: CANCELED / LOST.
        Fills it reports later are still recorded (as for any canceled order)."""
        self.cancel(CancelType.LOST, reason, at=at)

    # ----- derived state --------------------------------------------------------------------

    @property
    def remaining_size(self) -> Decimal:
        with money_context():
            return self.size - self.filled_size

    @property
    def average_price(self) -> Decimal | None:
        """Size-weighted mean of the fill prices (None before the first fill)."""
        if self.filled_size == ZERO:
            return None
        with money_context():
            return self.filled_notional / self.filled_size

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal


def _settle(value: str) -> str:
    if value not in ("OPEN", "CLOSE"):
        raise InvalidValue("settle", value, "expected OPEN or CLOSE")
    return value
