"""Technical indicators, updated one bar at a time in O(1), equal to TA-Lib's.

SMA, EMA, RSI, MACD and ATR replay TA-Lib's own arithmetic in the same order (running sums
that add the newest value and subtract the oldest, the same seeding and alignment), so they
agree with `talib` to the last bit or within a few ulps, warm-up included. Bollinger's
deviation is computed exactly instead (see the class). The tests run TA-Lib beside them.

`update(...)` returns the new value, or None while warming up. Floats are fine here: these
are signals' inputs, not money.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

from trading_engine.domain.errors import InvalidValue


def _period(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidValue(name, value, f"must be an integer ≥ {minimum}")
    return value


class SMA:
    """Simple moving average; first value after `period` inputs (TA-Lib SMA)."""

    def __init__(self, period: int) -> None:
        self.period = _period("period", period, 1)
        self._window: deque[float] = deque()
        self._total = 0.0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        self._total += x
        self._window.append(x)
        if len(self._window) < self.period:
            return None
        self.value = self._total / self.period
        self._total -= self._window.popleft()  # TA-Lib subtracts the trailing value after
        return self.value

    @property
    def ready(self) -> bool:
        return self.value is not None


class EMA:
    """Exponential moving average seeded with the SMA of the first `period` inputs."""

    def __init__(self, period: int) -> None:
        self.period = _period("period", period, 1)
        self.k = 2.0 / (period + 1)
        self._seed_total = 0.0
        self._seen = 0
        self.value: float | None = None

    def seed(self, values: list[float]) -> float:
        """Start from the average of exactly `period` values (TA-Lib's MACD aligns so)."""
        total = 0.0
        for x in values:
            total += x
        self._seen = self.period
        self.value = total / self.period
        return self.value

    def update(self, x: float) -> float | None:
        if self.value is not None:
            self.value = ((x - self.value) * self.k) + self.value
            return self.value
        self._seed_total += x
        self._seen += 1
        if self._seen < self.period:
            return None
        self.value = self._seed_total / self.period
        return self.value

    @property
    def ready(self) -> bool:
        return self.value is not None


class RSI:
    """Wilder's RSI; first value after `period + 1` closes; 0 when nothing moved (TA-Lib)."""

    def __init__(self, period: int = 14) -> None:
        self.period = _period("period", period, 2)
        self._previous: float | None = None
        self._gain = 0.0
        self._loss = 0.0
        self._changes = 0
        self.value: float | None = None

    def update(self, close: float) -> float | None:
        previous, self._previous = self._previous, close
        if previous is None:
            return None
        change = close - previous
        self._changes += 1
        if self._changes <= self.period:
            if change < 0:
                self._loss -= change
            else:
                self._gain += change
            if self._changes < self.period:
                return None
            self._loss /= self.period
            self._gain /= self.period
        else:
            self._loss *= self.period - 1
            self._gain *= self.period - 1
            if change < 0:
                self._loss -= change
            else:
                self._gain += change
            self._loss /= self.period
            self._gain /= self.period
        total = self._gain + self._loss
        # TA-Lib 0.6+ gives 0 only when nothing moved at all (older versions used 1e-8)
        self.value = 100.0 * (self._gain / total) if total != 0.0 else 0.0
        return self.value

    @property
    def ready(self) -> bool:
        return self.value is not None


@dataclass(frozen=True, slots=True)
class Bands:
    upper: float
    middle: float
    lower: float


class BollingerBands:
    """SMA ± k population standard deviations over `period` (TA-Lib BBANDS, matype SMA).

    The middle band is TA-Lib's SMA, bit for bit. The deviation cannot come from float
    running sums: at prices around 15,000,000 the squares are ~2e14 while the variance of a
    quiet window can be ~1e-12, so any float sum of squares (anchored or not) is all rounding
    noise there, and it drifts over a long series. The window's Σx and Σx² are kept exactly
    (floats are binary fractions, so `Fraction` sums are exact and stay O(1) per update); the
    variance is then exact before its one rounding to float. TA-Lib 0.6+ computes a stable
    deviation too; the two agree far inside 1e-9.
    """

    def __init__(self, period: int = 20, nbdev_up: float = 2.0, nbdev_down: float = 2.0) -> None:
        self.period = _period("period", period, 2)
        self.nbdev_up, self.nbdev_down = float(nbdev_up), float(nbdev_down)
        self._sma = SMA(period)
        self._window: deque[Fraction] = deque()
        self._sum = Fraction(0)
        self._sum2 = Fraction(0)
        self.value: Bands | None = None

    def update(self, x: float) -> Bands | None:
        middle = self._sma.update(x)
        exact = Fraction(x)
        self._window.append(exact)
        self._sum += exact
        self._sum2 += exact * exact
        if len(self._window) > self.period:
            old = self._window.popleft()
            self._sum -= old
            self._sum2 -= old * old
        if middle is None:
            return None
        n = self.period
        variance = self._sum2 / n - (self._sum / n) ** 2
        deviation = math.sqrt(float(variance)) if variance > 0 else 0.0
        self.value = Bands(
            middle + deviation * self.nbdev_up, middle, middle - deviation * self.nbdev_down
        )
        return self.value

    @property
    def ready(self) -> bool:
        return self.value is not None


@dataclass(frozen=True, slots=True)
class MacdValue:
    macd: float
    signal: float
    hist: float


class MACD:
    """TA-Lib's MACD: both EMAs seeded so their first values fall on the same bar (the fast
    one from the `fast` closes ending at bar `slow`), the signal an EMA of the MACD line; the
    first value comes after `slow + signal - 1` closes."""

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        fast, slow = _period("fast", fast, 2), _period("slow", slow, 2)
        if slow < fast:
            fast, slow = slow, fast  # TA-Lib swaps them too
        self.fast_period, self.slow_period = fast, slow
        self._fast, self._slow = EMA(fast), EMA(slow)
        self._signal = EMA(_period("signal", signal, 1))
        self._recent: deque[float] = deque(maxlen=fast)
        self.value: MacdValue | None = None

    def update(self, close: float) -> MacdValue | None:
        slow = self._slow.update(close)
        if self._fast.ready:
            fast = self._fast.update(close)
        else:
            self._recent.append(close)
            fast = self._fast.seed(list(self._recent)) if slow is not None else None
        if slow is None or fast is None:
            return None
        line = fast - slow
        signal = self._signal.update(line)
        if signal is None:
            return None
        self.value = MacdValue(line, signal, line - signal)
        return self.value

    @property
    def ready(self) -> bool:
        return self.value is not None


class ATR:
    """Wilder's average true range; first value at bar `period` (the `period + 1`-th bar),
    seeded with the mean of the first `period` true ranges (TA-Lib ATR)."""

    def __init__(self, period: int = 14) -> None:
        self.period = _period("period", period, 1)
        self._previous_close: float | None = None
        self._seed_total = 0.0
        self._ranges = 0
        self.value: float | None = None

    def update(self, high: float, low: float, close: float) -> float | None:
        previous, self._previous_close = self._previous_close, close
        if previous is None:
            return None
        true_range = high - low
        if abs(high - previous) > true_range:
            true_range = abs(high - previous)
        if abs(low - previous) > true_range:
            true_range = abs(low - previous)
        if self.period == 1:
            self.value = true_range
            return self.value
        self._ranges += 1
        if self.value is None:
            self._seed_total += true_range
            if self._ranges < self.period:
                return None
            self.value = self._seed_total / self.period
            return self.value
        value = self.value * (self.period - 1)
        value += true_range
        self.value = value / self.period
        return self.value

    @property
    def ready(self) -> bool:
        return self.value is not None
