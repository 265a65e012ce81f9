"""GMO's JSON rows to the broker port's types, statuses mapped as gmo-api.md says.

All numbers arrive as strings (or, for ids in lists, as numbers): they become `Decimal` from
their text, never through float.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from trading_engine.domain.values import ZERO, CancelType, OrderStatus, OrderType, Side
from trading_engine.ports.broker import Balance, ExchangeExecution, ExchangeOrder, ExchangePosition

# GMO's cancelType to the engine's reason for a CANCELED order.
CANCEL_TYPES = {
    "USER": CancelType.USER,
    "POSITION_LOSSCUT": CancelType.POSITION_LOSSCUT,
    "INSUFFICIENT_BALANCE": CancelType.INSUFFICIENT_BALANCE,
    "INSUFFICIENT_MARGIN": CancelType.INSUFFICIENT_MARGIN,
    "ACCOUNT_LOSSCUT": CancelType.ACCOUNT_LOSSCUT,
    "MARGIN_CALL": CancelType.MARGIN_CALL,
    "MARGIN_CALL_LOSSCUT": CancelType.MARGIN_CALL_LOSSCUT,
    "EXPIRED_FAK": CancelType.EXPIRED,
    "EXPIRED_FOK": CancelType.EXPIRED,
    "EXPIRED_SOK": CancelType.SOK_TAKER,  # post-only refused: it would have taken
    "EXPIRED_SELFTRADE": CancelType.EXPIRED,
}


def number(value: object) -> Decimal:
    if isinstance(value, float):  # never: GMO sends strings; refuse rather than round
        raise ValueError(f"GMO sent a float {value!r}; expected a decimal string")
    return Decimal(str(value))


def moment(value: object) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def status_of(raw: dict[str, Any]) -> tuple[OrderStatus, CancelType | None, bool]:
    """(engine status, cancel reason, cancel pending) for one GMO order row."""
    gmo = str(raw["status"])
    executed = number(raw.get("executedSize", "0"))
    working = OrderStatus.PARTIALLY_FILLED if executed > ZERO else OrderStatus.NEW
    cancel_type = raw.get("cancelType")
    if gmo in ("WAITING", "ORDERED", "MODIFYING"):
        return working, None, False
    if gmo == "CANCELLING":
        return working, None, True
    if gmo == "EXECUTED":
        return OrderStatus.FILLED, None, False
    if gmo == "CANCELED":
        return OrderStatus.CANCELED, CANCEL_TYPES.get(str(cancel_type), CancelType.USER), False
    if gmo == "EXPIRED":
        return OrderStatus.CANCELED, CANCEL_TYPES.get(str(cancel_type), CancelType.EXPIRED), False
    raise ValueError(f"unknown GMO order status {gmo!r}")


def to_order(raw: dict[str, Any]) -> ExchangeOrder:
    status, cancel_type, pending = status_of(raw)
    kind = OrderType.parse(str(raw["executionType"]))
    price = number(raw.get("price", "0"))
    return ExchangeOrder(
        exchange_order_id=str(raw["orderId"]),
        symbol=str(raw["symbol"]),
        side=Side.parse(str(raw["side"])),
        order_type=kind,
        size=number(raw["size"]),
        price=None if kind is OrderType.MARKET or price == ZERO else price,
        status=status,
        executed_size=number(raw.get("executedSize", "0")),
        timestamp=moment(raw["timestamp"]),
        cancel_type=cancel_type,
        cancel_pending=pending,
        raw_status=str(raw["status"]),
        settle=str(raw.get("settleType", "")),
    )


def to_execution(raw: dict[str, Any]) -> ExchangeExecution:
    return ExchangeExecution(
        execution_id=str(raw["executionId"]),
        exchange_order_id=str(raw["orderId"]),
        symbol=str(raw["symbol"]),
        side=Side.parse(str(raw["side"])),
        price=number(raw["price"]),
        size=number(raw["size"]),
        fee=number(raw.get("fee", "0")),
        timestamp=moment(raw["timestamp"]),
        settle=str(raw.get("settleType", "")),
    )


def to_balance(raw: dict[str, Any]) -> Balance:
    return Balance(
        asset=str(raw["symbol"]), amount=number(raw["amount"]), available=number(raw["available"])
    )


def to_position(raw: dict[str, Any]) -> ExchangePosition:
    return ExchangePosition(
        position_id=str(raw["positionId"]),
        symbol=str(raw["symbol"]),
        side=Side.parse(str(raw["side"])),
        size=number(raw["size"]),
        price=number(raw["price"]),
    )
