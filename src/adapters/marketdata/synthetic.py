"""A seeded synthetic market: trades that exercise every strategy without a collector.

The model, in market time (not trade count):

* **Regimes.** The market is always in one of three regimes: trending up, trending down, or
  ranging. Each lasts 6 to 30 minutes, then hands over to one of the two *other* regimes
  (so every regime recurs within a couple of hours). A trend drifts by 0.3 to 0.8 times the
  volatility per minute (RSI(14) on 1-minute bars then sits around 65-80 and often crosses
  70 or 30); a range pulls the price back towards where it started (mean reversion with a
  half-life of 2 to 5 minutes). Each regime also scales the volatility by 0.6 to 1.5, so
  quiet and busy spells alternate.
* **Prices.** A geometric random walk: between two trades `dt` minutes apart the price is
  multiplied by `1 + drift·dt + volatility·scale·√dt·z`, z ≈ N(0, 1) (the sum of twelve
  uniforms minus six). The volatility scales with elapsed time, so a quiet gap is followed by
  a proportionally larger move. Prices are rounded to `tick` and never fall below it.
  With the defaults (0.1 % per √minute, about 72 % a year; 120 trades a minute) three hours
  of 1-minute bars typically hold 4-11 SMA(5)/SMA(20) crosses, dozens of bars with RSI(14)
  beyond 30/70 and 10-30 closes outside the Bollinger(20, 2) bands; the first few thousand
  trades (30-40 bars) often already show a cross, an RSI extreme and a band touch.
* **Time.** Gaps between trades are exponential with mean `mean_interval_ms`, in whole
  milliseconds (GMO's resolution), so timestamps never decrease. About one trade in ten
  continues the previous taker's sweep: same millisecond, same side, the price walking 0-2
  ticks further into the book. Every 1,500 to 6,000 trades the market goes quiet for 2.5 to 8
  minutes, which leaves empty 1-minute bars.
* **Sides and sizes.** The taker buys more often when the price ticks up and sells when it
  ticks down. Sizes are whole multiples of `size_step`, spread over four orders of magnitude
  (mostly small, occasionally large: 1 to 99,999 steps).

Determinism: one `random.Random(seed)` drives everything and only operations that IEEE 754
rounds exactly are used on floats (+, -, ×, ÷, √ and comparisons: the exponential gaps come
from von Neumann's method, not a logarithm), and Decimal rounding runs in a fixed context.
So the same arguments give the same trades on every machine and Python ≥ 3.11.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from enum import StrEnum

from trading_engine.domain.market import Trade
from trading_engine.domain.values import Exchange, Side, Symbol

_CONTEXT = Context(prec=34, rounding=ROUND_HALF_EVEN)  # independent of the caller's context
_SWEEP_PROBABILITY = 0.1
_REGIME_MINUTES = (6.0, 30.0)
_TREND_STRENGTH = (0.3, 0.8)  # drift per minute, in units of the per-minute volatility
_REVERSION_PER_MINUTE = (0.15, 0.35)
_VOLATILITY_SCALE = (0.6, 1.5)
_QUIET_EVERY_TRADES = (1_500, 6_000)
_QUIET_MS = (150_000, 480_000)
_SIZE_MAGNITUDE_WEIGHTS = (0.33, 0.37, 0.22, 0.07, 0.01)  # 1-9, 10-99, ... 10^4-99,999 steps


class Regime(StrEnum):
    TRENDING_UP = "trending_up"
    TRENDING_DOWN = "trending_down"
    RANGING = "ranging"


@dataclass(frozen=True, slots=True)
class RegimeSpan:
    """A regime as it happened: when it began (market time) and its first trade's index."""

    regime: Regime
    start: datetime
    first_trade: int


@dataclass(slots=True)
class _State:
    regime: Regime
    ends_ms: int
    drift: float  # per minute (trends)
    reversion: float  # per minute (ranges)
    anchor: float  # the price a range reverts to
    scale: float  # volatility multiplier


class SyntheticMarket:
    """Iterating gives the trades; `regimes` lists the regimes the walk has entered so far."""

    def __init__(
        self,
        symbol: str | Symbol = "BTC_JPY",
        exchange: str | Exchange = "gmo",
        *,
        start: datetime,
        seed: int,
        count: int,
        start_price: Decimal = Decimal("15000000"),
        mean_interval_ms: float = 500,
        volatility: float = 0.001,
        tick: Decimal = Decimal("1"),
        size_step: Decimal = Decimal("0.0001"),
    ) -> None:
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("start must be timezone-aware")
        if count < 0:
            raise ValueError(f"count must not be negative, got {count}")
        if not mean_interval_ms > 0 or not math.isfinite(mean_interval_ms):
            raise ValueError(f"mean_interval_ms must be positive, got {mean_interval_ms}")
        if not volatility >= 0 or not math.isfinite(volatility):
            raise ValueError(f"volatility must be a non-negative number, got {volatility}")
        for name, value in (("start_price", start_price), ("tick", tick), ("size_step", size_step)):
            if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
                raise ValueError(f"{name} must be a positive Decimal, got {value!r}")
        self.symbol = symbol if isinstance(symbol, Symbol) else Symbol(symbol)
        self.exchange = exchange if isinstance(exchange, Exchange) else Exchange(exchange)
        self.start = start.astimezone(UTC)
        self.seed = seed
        self.count = count
        self.start_price = start_price
        self.mean_interval_ms = float(mean_interval_ms)
        self.volatility = volatility
        self.tick = tick
        self.size_step = size_step
        self.regimes: list[RegimeSpan] = []

    def __iter__(self) -> Iterator[Trade]:
        rng = random.Random(self.seed)
        self.regimes = []
        price = float(self.start_price)
        floor = float(self.tick)
        now_ms = 0
        state = self._next_regime(rng, None, 0, price, 0)
        quiet_in = _uniform_int(rng, *_QUIET_EVERY_TRADES)
        last: Trade | None = None
        for index in range(self.count):
            if last is None:
                side = Side.BUY if rng.random() < 0.5 else Side.SELL
            else:
                quiet_in -= 1
                sweep = False
                if quiet_in <= 0:
                    gap_ms = _uniform_int(rng, *_QUIET_MS)
                    quiet_in = _uniform_int(rng, *_QUIET_EVERY_TRADES)
                elif rng.random() < _SWEEP_PROBABILITY:
                    gap_ms, sweep = 0, True
                else:
                    gap_ms = self._exponential_ms(rng)
                now_ms += gap_ms
                while now_ms >= state.ends_ms:
                    state = self._next_regime(rng, state.regime, state.ends_ms, price, index)
                if sweep:  # the same taker walking further into the book
                    side = last.side
                    steps = Decimal(_uniform_int(rng, 0, 2) * side.sign)
                    price = float(_CONTEXT.fma(steps, self.tick, last.price))
                else:
                    minutes = gap_ms / 60_000
                    z = -6.0
                    for _ in range(12):  # not sum(): its float algorithm changed in 3.12
                        z += rng.random()
                    if state.regime is Regime.RANGING:
                        drift = -state.reversion * (price / state.anchor - 1.0)
                    else:
                        drift = state.drift * self.volatility
                    noise = self.volatility * state.scale * math.sqrt(minutes) * z
                    price = max(floor, price * (1.0 + drift * minutes + noise))
                    buy_odds = 0.5 + max(-0.3, min(0.3, 0.15 * z))  # takers chase the move
                    side = Side.BUY if rng.random() < buy_odds else Side.SELL
            trade = Trade(
                exchange=self.exchange,
                symbol=self.symbol,
                side=side,
                price=max(self.tick, self._round(Decimal(price))),
                size=self._size(rng),
                timestamp=self.start + timedelta(milliseconds=now_ms),
            )
            yield trade
            last = trade

    def _next_regime(
        self, rng: random.Random, previous: Regime | None, at_ms: int, price: float, index: int
    ) -> _State:
        choices = [regime for regime in Regime if regime is not previous]
        regime = choices[min(int(rng.random() * len(choices)), len(choices) - 1)]
        minutes = _uniform(rng, *_REGIME_MINUTES)
        strength = _uniform(rng, *_TREND_STRENGTH)
        state = _State(
            regime=regime,
            ends_ms=at_ms + int(minutes * 60_000),
            drift=-strength if regime is Regime.TRENDING_DOWN else strength,
            reversion=_uniform(rng, *_REVERSION_PER_MINUTE),
            anchor=price,
            scale=_uniform(rng, *_VOLATILITY_SCALE),
        )
        start = self.start + timedelta(milliseconds=at_ms)
        self.regimes.append(RegimeSpan(regime, start, index))
        return state

    def _exponential_ms(self, rng: random.Random) -> int:
        return int(self.mean_interval_ms * _standard_exponential(rng) + 0.5)

    def _round(self, price: Decimal) -> Decimal:
        ticks = _CONTEXT.divide(price, self.tick).to_integral_value(context=_CONTEXT)
        return _CONTEXT.multiply(ticks, self.tick)

    def _size(self, rng: random.Random) -> Decimal:
        pick, magnitude = rng.random(), 0
        while magnitude < len(_SIZE_MAGNITUDE_WEIGHTS) - 1:
            pick -= _SIZE_MAGNITUDE_WEIGHTS[magnitude]
            if pick < 0:
                break
            magnitude += 1
        low = 10**magnitude
        return _CONTEXT.multiply(Decimal(_uniform_int(rng, low, 10 * low - 1)), self.size_step)


def synthetic_trades(
    symbol: str | Symbol = "BTC_JPY",
    exchange: str | Exchange = "gmo",
    *,
    start: datetime,
    seed: int,
    count: int,
    start_price: Decimal = Decimal("15000000"),
    mean_interval_ms: float = 500,
    volatility: float = 0.001,
    tick: Decimal = Decimal("1"),
    size_step: Decimal = Decimal("0.0001"),
) -> Iterator[Trade]:
    """`count` trades of the synthetic market (see the module docstring), lazily."""
    return iter(
        SyntheticMarket(
            symbol,
            exchange,
            start=start,
            seed=seed,
            count=count,
            start_price=start_price,
            mean_interval_ms=mean_interval_ms,
            volatility=volatility,
            tick=tick,
            size_step=size_step,
        )
    )


def _standard_exponential(rng: random.Random) -> float:
    """Exp(1) by von Neumann's method: comparisons of uniforms only, no logarithm (whose
    last bit may differ between C libraries). Accept `k + u1` when the run of decreasing
    uniforms that starts with u1 has odd length, else add one to k and start again."""
    whole = 0
    while True:
        first = smallest = rng.random()
        length = 1
        while (following := rng.random()) <= smallest:
            smallest = following
            length += 1
        if length % 2:
            return whole + first
        whole += 1


def _uniform(rng: random.Random, low: float, high: float) -> float:
    return low + (high - low) * rng.random()


def _uniform_int(rng: random.Random, low: int, high: int) -> int:
    """An integer in [low, high], from `random()` alone (stable across Python versions)."""
    return low + min(int(rng.random() * (high - low + 1)), high - low)
