"""What every strategy shares: turning a decision on a bar into a Signal with a stable id."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from trading_engine.domain.bars import bar_end
from trading_engine.domain.models import OHLCV, Signal, signal_id_for
from trading_engine.domain.values import SignalAction


class BarStrategy:
    """Base class: subclasses set `name`, fill `parameters` and implement the two methods."""

    name = "base"

    def __init__(self, parameters: dict[str, Any], warmup_bars: int) -> None:
        self.parameters = parameters
        self.warmup_bars = warmup_bars

    def signal(
        self,
        bar: OHLCV,
        action: SignalAction,
        confidence: float,
        indicators: dict[str, float | None],
        reason: str,
    ) -> Signal:
        bounded = min(max(confidence, 0.0), 1.0)
        return Signal(
            signal_id=signal_id_for(self.name, self.parameters, bar),
            exchange=bar.exchange,
            symbol=bar.symbol,
            strategy=self.name,
            action=action,
            # signals.confidence is DECIMAL(5,2)
            confidence=Decimal(str(bounded)).quantize(Decimal("0.01"), ROUND_HALF_UP),
            price_ref=bar.close,
            # decided when the bar closed (a calendar month's end, not a nominal length)
            timestamp=bar_end(bar),
            indicators=dict(indicators),
            meta={
                "reason": reason,
                "timeframe": str(bar.timeframe),
                "bar_start": bar.timestamp.isoformat(),
                "parameters": self.parameters,
            },
        )
