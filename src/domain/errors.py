"""Errors the domain raises. Each names what was refused and why, in business terms."""

from __future__ import annotations


class DomainError(Exception):
    """Base class: a command or value the trading rules refuse."""


class InvalidValue(DomainError, ValueError):
    """A value that cannot be a price, size, symbol, ... (bad enum value, precision, sign)."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {field} {value!r}: {reason}")


class IllegalOrderTransition(DomainError):
    """A command that the order's state machine does not allow in its current state."""

    def __init__(self, order_id: object, status: object, command: str, reason: str = "") -> None:
        self.order_id = order_id
        self.status = status
        self.command = command
        detail = f": {reason}" if reason else ""
        super().__init__(f"order {order_id} is {status}; cannot {command}{detail}")


class UnknownOrder(DomainError, LookupError):
    """A command or fill for an order the ledger has never seen."""

    def __init__(self, order_id: object) -> None:
        self.order_id = order_id
        super().__init__(f"unknown order {order_id}")


class DuplicateOrder(DomainError):
    """A second order for the same signal (and leg): refused so a signal never trades twice."""

    def __init__(self, order_id: object, signal_id: str) -> None:
        self.order_id = order_id
        self.signal_id = signal_id
        super().__init__(f"order {order_id} for signal {signal_id!r} already exists")


class FillMismatch(DomainError):
    """A fill whose instrument or order does not match the position it is applied to."""
