"""Strategy name (`STRATEGY_NAME`) → constructor. A new strategy: one module, one line here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trading_engine.adapters.strategies.bollinger_bands import BollingerTouch
from trading_engine.adapters.strategies.moving_average_cross import MovingAverageCross
from trading_engine.adapters.strategies.rsi import RsiThresholds
from trading_engine.ports.strategy import Strategy

STRATEGIES: dict[str, Callable[..., Strategy]] = {
    MovingAverageCross.name: MovingAverageCross,
    RsiThresholds.name: RsiThresholds,
    BollingerTouch.name: BollingerTouch,
}


class UnknownStrategy(ValueError):
    pass


def create_strategy(name: str, **parameters: Any) -> Strategy:
    try:
        factory = STRATEGIES[name]
    except KeyError:
        raise UnknownStrategy(
            f"unknown strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}"
        ) from None
    try:
        return factory(**parameters)
    except TypeError as error:
        raise UnknownStrategy(f"bad parameters for {name}: {error}") from None
