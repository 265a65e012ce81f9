"""Tables the strategy module writes: closed bars and signals (the seed's `ohlcv`, `signals`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from trading_engine.domain.models import OHLCV, Signal
from trading_engine.domain.values import Exchange, Symbol, Timeframe


class BarRepository(Protocol):
    def upsert(self, bars: Sequence[OHLCV]) -> None:
        """Store closed bars; storing the same bar again replaces it (replays are idempotent)."""
        ...

    def recent(
        self,
        exchange: Exchange,
        symbol: Symbol,
        timeframe: Timeframe,
        before: datetime | None,
        limit: int,
    ) -> list[OHLCV]:
        """Up to `limit` closed bars starting before `before` (all if None), oldest first."""
        ...


class SignalRepository(Protocol):
    def add(self, signal: Signal) -> bool:
        """Store a signal once: False (and no change) if its signal id is already stored."""
        ...

    def add_many(self, signals: Sequence[Signal]) -> None:
        """Store signals in one transaction, each once (those already stored are skipped)."""
        ...

    def get(self, signal_id: str) -> Signal | None: ...
