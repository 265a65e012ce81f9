"""RSI thresholds: entering the oversold zone → enter_long; the overbought zone → exit/short.

Signals fire when RSI *enters* a zone, not on every bar inside it, so a long oversold spell
is one decision, not one per bar.
"""

from __future__ import annotations

from trading_engine.adapters.strategies.base import BarStrategy
from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.indicators import RSI
from trading_engine.domain.models import OHLCV, Signal
from trading_engine.domain.values import SignalAction


class RsiThresholds(BarStrategy):
    name = "rsi"

    def __init__(
        self,
        period: int = 14,
        oversold: float = 30.0,
        overbought: float = 70.0,
        allow_short: bool = False,
    ) -> None:
        if not 0 <= oversold < overbought <= 100:
            raise InvalidValue("oversold", oversold, "need 0 ≤ oversold < overbought ≤ 100")
        super().__init__(
            {
                "period": period,
                "oversold": oversold,
                "overbought": overbought,
                "allow_short": allow_short,
            },
            warmup_bars=period * 10,  # Wilder smoothing remembers ~10 periods
        )
        self.rsi = RSI(period)
        self.oversold, self.overbought, self.allow_short = oversold, overbought, allow_short
        self._zone: str | None = None

    def calculate_indicators(self, ohlcv: OHLCV) -> dict[str, float | None]:
        return {"rsi": self.rsi.update(float(ohlcv.close))}

    def decide(self, ohlcv: OHLCV, indicators: dict[str, float | None]) -> Signal | None:
        rsi = indicators["rsi"]
        if rsi is None:
            return None
        zone = None
        if rsi <= self.oversold:
            zone = "oversold"
        elif rsi >= self.overbought:
            zone = "overbought"
        previous, self._zone = self._zone, zone
        if zone is None or zone == previous:
            return None
        if zone == "oversold":
            confidence = 0.5 + (self.oversold - rsi) / max(self.oversold, 1e-9) / 2
            return self.signal(
                ohlcv,
                SignalAction.ENTER_LONG,
                confidence,
                indicators,
                f"RSI {rsi:.2f} ≤ oversold {self.oversold}",
            )
        confidence = 0.5 + (rsi - self.overbought) / max(100 - self.overbought, 1e-9) / 2
        action = SignalAction.ENTER_SHORT if self.allow_short else SignalAction.EXIT
        return self.signal(
            ohlcv, action, confidence, indicators, f"RSI {rsi:.2f} ≥ overbought {self.overbought}"
        )
