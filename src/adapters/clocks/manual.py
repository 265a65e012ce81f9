"""A clock that moves only when told to: simulations, backtests and scripted runs."""

from __future__ import annotations

from datetime import datetime, timedelta


class ManualClock:
    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the clock's start must be timezone-aware")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, by: timedelta) -> datetime:
        if by < timedelta(0):
            raise ValueError("a clock does not go backwards")
        self._now += by
        return self._now

    def set(self, to: datetime) -> None:
        if to < self._now:
            raise ValueError(f"a clock does not go backwards: {to} < {self._now}")
        self._now = to
