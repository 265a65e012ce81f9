"""A signal's decision is recorded once, refused ones included, and survives the store."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.domain.models import Signal
from trading_engine.domain.order import order_id_for
from trading_engine.domain.signal_decision import (
    DecisionAlreadyMade,
    SignalDecision,
    decision_id_for,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SIGNAL = Signal(
    signal_id="sig-9",
    exchange="gmo",
    symbol="BTC_JPY",
    strategy="rsi",
    action="enter_long",
    confidence=Decimal("0.80"),
    price_ref=Decimal("15000000"),
    timestamp=T0,
    indicators={"rsi": 24.5, "none": None},
    meta={"reason": "RSI 24.50 ≤ oversold 30", "parameters": {"period": 14}},
)


def test_refused_signal_is_recorded_with_its_reason(tmp_path: Path) -> None:
    store = sqlite_event_store(tmp_path / "e.sqlite3")
    decision = SignalDecision.receive(SIGNAL, at=T0)
    decision.refuse("max position size 0.05 exceeded: 0.04 + 0.02", "ACTIVE", at=T0)
    store.save(decision)
    loaded = store.repository.get(decision_id_for("sig-9"))
    assert loaded == decision
    assert loaded.outcome == "refused"
    assert "max position size" in loaded.reason
    assert loaded.indicators == {"rsi": 24.5, "none": None}
    assert loaded.price_ref == Decimal("15000000")


def test_a_decision_is_made_once() -> None:
    decision = SignalDecision.receive(SIGNAL, at=T0)
    decision.approve([order_id_for("sig-9")], "ACTIVE", at=T0)
    with pytest.raises(DecisionAlreadyMade):
        decision.refuse("late", "HALTED", at=T0)
    assert decision.order_ids == [str(order_id_for("sig-9"))]
    assert decision.id == decision_id_for("sig-9")
