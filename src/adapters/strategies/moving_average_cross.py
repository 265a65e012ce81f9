"""Moving-average cross: golden cross → enter_long; dead cross → exit (or enter_short)."""

from __future__ import annotations

from trading_engine.adapters.strategies.base import BarStrategy
from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.indicators import SMA
from trading_engine.domain.models import OHLCV, Signal
from trading_engine.domain.values import SignalAction


class MovingAverageCross(BarStrategy):
    name = "moving_average_cross"

    def __init__(self, fast_window: int = 5, slow_window: int = 20, allow_short: bool = False):
        if not 1 <= fast_window < slow_window:
            raise InvalidValue("fast_window", fast_window, "must be ≥ 1 and below slow_window")
        super().__init__(
            {"fast_window": fast_window, "slow_window": slow_window, "allow_short": allow_short},
            warmup_bars=slow_window + 1,
        )
        self.fast, self.slow = SMA(fast_window), SMA(slow_window)
        self.allow_short = allow_short
        self._above: bool | None = None  # was fast above slow on the previous bar?

    def calculate_indicators(self, ohlcv: OHLCV) -> dict[str, float | None]:
        close = float(ohlcv.close)
        return {"sma_fast": self.fast.update(close), "sma_slow": self.slow.update(close)}

    def decide(self, ohlcv: OHLCV, indicators: dict[str, float | None]) -> Signal | None:
        fast, slow = indicators["sma_fast"], indicators["sma_slow"]
        if fast is None or slow is None or fast == slow:
            return None  # equal: no side yet; the cross happens when one strictly leads
        above = fast > slow
        previous, self._above = self._above, above
        if previous is None or previous == above:
            return None
        spread = abs(fast - slow) / slow if slow else 0.0
        confidence = min(1.0, 0.5 + spread * 100)
        if above:
            return self.signal(
                ohlcv,
                SignalAction.ENTER_LONG,
                confidence,
                indicators,
                "golden cross: fast SMA crossed above slow SMA",
            )
        action = SignalAction.ENTER_SHORT if self.allow_short else SignalAction.EXIT
        return self.signal(
            ohlcv, action, confidence, indicators, "dead cross: fast SMA crossed below slow SMA"
        )
