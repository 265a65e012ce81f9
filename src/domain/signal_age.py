"""Stale signals never trade: a decision is only as good as the bar it was made on.

By the time a signal reaches the execution module the market may have moved on: the
execution was down and signals piled up, or the strategy read an hour of backlog after a
restart. Its age is how long ago its bar closed, measured on the feed's clock (the market's
time, see `feed_clock.py`), never the host's: a replay of last year's data is as fresh as the
day it was recorded, and a signal made from a backlog is as old as that backlog.

A bar closes when the trade after it arrives, or by the feed's clock when trading is quiet
(its end plus a grace); a bar ended by a trade after a silence closed when that trade came,
not at its nominal end (a replay faster than real time ends bars that way: its clock cannot
run ahead of its trades), so the silence is not counted as the signal's age.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.models import Signal
from trading_engine.domain.values import Timeframe

STALE = "stale signal"  # how every refusal for age starts (a metric's reason label)


@dataclass(frozen=True, slots=True)
class SignalAgeLimit:
    """`seconds` when set, else `bar_lengths` of the signal's own bar (its `timeframe` in
    meta, else `default_bar_seconds`)."""

    seconds: float | None = None
    bar_lengths: float = 3.0
    default_bar_seconds: int = 60

    def __post_init__(self) -> None:
        if self.seconds is not None and self.seconds <= 0:
            raise InvalidValue("max signal age", self.seconds, "must be > 0 seconds")
        if self.bar_lengths <= 0:
            raise InvalidValue("max signal age in bars", self.bar_lengths, "must be > 0")

    def limit_for(self, signal: Signal) -> timedelta:
        if self.seconds is not None:
            return timedelta(seconds=self.seconds)
        try:
            bar = Timeframe(str(signal.meta.get("timeframe"))).seconds
        except InvalidValue:
            bar = self.default_bar_seconds
        return timedelta(seconds=self.bar_lengths * bar)

    def refusal(self, signal: Signal, age: timedelta) -> str | None:
        """Why a signal whose bar closed `age` ago is too old to act on, or None."""
        limit = self.limit_for(signal)
        if age <= limit:
            return None
        return (
            f"{STALE}: its bar (ending {signal.timestamp.isoformat()}) closed "
            f"{age.total_seconds():.1f} s ago on the feed's clock, more than the "
            f"{limit.total_seconds():g} s allowed (MAX_SIGNAL_AGE_SECONDS)"
        )
