"""What the execution module decided about one signal, kept in the event log.

Every signal that reaches execution gets a `SignalDecision`: the signal as received (so an
audit or a tax export never depends on the `signals` table) and then either the orders it
led to or the reason it was refused (risk limit, sizing, trading state). A refused signal is
therefore recorded, never silently dropped. The id derives from the signal id, so a signal
delivered twice meets its earlier decision instead of making a second one.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from trading_engine.domain.errors import DomainError
from trading_engine.domain.models import Signal
from trading_engine.domain.values import aware, identifier, text_of

DECISION_NAMESPACE = UUID("9d41c6b2-7f08-5e3a-b1c4-2a6e8f0d3b57")


def decision_id_for(signal_id: str) -> UUID:
    return uuid5(DECISION_NAMESPACE, identifier("signal_id", signal_id))


class DecisionAlreadyMade(DomainError):
    def __init__(self, signal_id: str, outcome: str) -> None:
        super().__init__(f"signal {signal_id} was already {outcome}")


class SignalDecision(Aggregate):
    class Received(Aggregate.Created):
        signal_id: str
        exchange: str
        symbol: str
        strategy: str
        action: str
        confidence: Decimal
        price_ref: Decimal
        signal_time: datetime
        indicators: dict[str, Any]
        meta: dict[str, Any]

    class Approved(Aggregate.Event):
        order_ids: list[str]
        trading_state: str

        def apply(self, decision: SignalDecision) -> None:
            decision.outcome = "approved"
            decision.order_ids = list(self.order_ids)
            decision.trading_state = self.trading_state

    class Refused(Aggregate.Event):
        reason: str
        trading_state: str

        def apply(self, decision: SignalDecision) -> None:
            decision.outcome = "refused"
            decision.reason = self.reason
            decision.trading_state = self.trading_state

    def __init__(
        self,
        signal_id: str,
        exchange: str,
        symbol: str,
        strategy: str,
        action: str,
        confidence: Decimal,
        price_ref: Decimal,
        signal_time: datetime,
        indicators: dict[str, Any],
        meta: dict[str, Any],
    ) -> None:
        self.signal_id, self.exchange, self.symbol = signal_id, exchange, symbol
        self.strategy, self.action = strategy, action
        self.confidence, self.price_ref, self.signal_time = confidence, price_ref, signal_time
        self.indicators, self.meta = indicators, meta
        self.outcome: str | None = None
        self.reason: str | None = None
        self.order_ids: list[str] = []
        self.trading_state: str | None = None

    @classmethod
    def receive(cls, signal: Signal, *, at: datetime) -> SignalDecision:
        return cls._create(
            cls.Received,
            id=decision_id_for(signal.signal_id),
            timestamp=aware("at", at),
            signal_id=signal.signal_id,
            exchange=str(signal.exchange),
            symbol=str(signal.symbol),
            strategy=signal.strategy,
            action=signal.action.value,
            confidence=signal.confidence,
            price_ref=signal.price_ref,
            signal_time=signal.timestamp,
            indicators=_plain(signal.indicators),
            meta=_plain(signal.meta),
        )

    def approve(self, order_ids: list[UUID], trading_state: str, *, at: datetime) -> None:
        self._undecided()
        self.trigger_event(
            self.Approved,
            timestamp=aware("at", at),
            order_ids=[str(i) for i in order_ids],
            trading_state=trading_state,
        )

    def refuse(self, reason: str, trading_state: str, *, at: datetime) -> None:
        self._undecided()
        self.trigger_event(
            self.Refused,
            timestamp=aware("at", at),
            reason=text_of(reason),
            trading_state=trading_state,
        )

    def _undecided(self) -> None:
        if self.outcome is not None:
            raise DecisionAlreadyMade(self.signal_id, self.outcome)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Indicators and meta as JSON-safe values (floats, strings, None, nested dicts/lists)."""

    def convert(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if value is None or isinstance(value, (bool, int, float, str, Decimal, datetime)):
            return value
        return str(value)

    return convert(values)
