"""Bollinger bands: close touching the lower band → enter_long; the upper band → exit/short.

A touch is the close reaching the band after being inside it, so one excursion is one signal.
"""

from __future__ import annotations

from trading_engine.adapters.strategies.base import BarStrategy
from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.indicators import BollingerBands
from trading_engine.domain.models import OHLCV, Signal
from trading_engine.domain.values import SignalAction


class BollingerTouch(BarStrategy):
    name = "bollinger_bands"

    def __init__(self, period: int = 20, std_dev: float = 2.0, allow_short: bool = False) -> None:
        if std_dev <= 0:
            raise InvalidValue("std_dev", std_dev, "must be positive")
        super().__init__(
            {"period": period, "std_dev": std_dev, "allow_short": allow_short},
            warmup_bars=period,
        )
        self.bands = BollingerBands(period, std_dev, std_dev)
        self.allow_short = allow_short
        self._side: str | None = None

    def calculate_indicators(self, ohlcv: OHLCV) -> dict[str, float | None]:
        bands = self.bands.update(float(ohlcv.close))
        if bands is None:
            return {"bb_upper": None, "bb_middle": None, "bb_lower": None}
        return {"bb_upper": bands.upper, "bb_middle": bands.middle, "bb_lower": bands.lower}

    def decide(self, ohlcv: OHLCV, indicators: dict[str, float | None]) -> Signal | None:
        upper, lower = indicators["bb_upper"], indicators["bb_lower"]
        if upper is None or lower is None or upper == lower:
            return None
        close = float(ohlcv.close)
        side = "lower" if close <= lower else "upper" if close >= upper else None
        previous, self._side = self._side, side
        if side is None or side == previous:
            return None
        if side == "lower":
            return self.signal(
                ohlcv,
                SignalAction.ENTER_LONG,
                1.0,
                indicators,
                f"close {close} touched the lower band {lower:.8f}",
            )
        action = SignalAction.ENTER_SHORT if self.allow_short else SignalAction.EXIT
        return self.signal(
            ohlcv, action, 1.0, indicators, f"close {close} touched the upper band {upper:.8f}"
        )
