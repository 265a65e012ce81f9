"""The strategy contract (the seed's `calculate_indicators` / `decide`)."""

from __future__ import annotations

from typing import Any, Protocol

from trading_engine.domain.models import OHLCV, Signal


class Strategy(Protocol):
    """Fed closed bars of one symbol and timeframe, in time order, one at a time."""

    name: str
    parameters: dict[str, Any]
    warmup_bars: int  # bars to replay from the store after a restart to rebuild state

    def calculate_indicators(self, ohlcv: OHLCV) -> dict[str, float | None]:
        """Update the indicators with this bar and return their values (None while warming up)."""
        ...

    def decide(self, ohlcv: OHLCV, indicators: dict[str, float | None]) -> Signal | None:
        """A signal for this bar, or None. Called right after `calculate_indicators`."""
        ...
