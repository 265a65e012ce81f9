"""The market's time as the feed tells it, for acting on silence.

Bars close when a later trade arrives; when trading goes quiet, something must still close
them, and a signal must be judged stale by how far the *market* has moved on. Neither may use
the host's clock: a replay of last year's data would close every bar at once, and a host
clock a minute off would make live trades late. The feed clock is the latest exchange time
seen plus the wall time elapsed since that trade entered its stream (lag-aware: a trade read
from a backlog an hour old counts as an hour old, a trade read as it arrives counts as now).

Pure: wall time comes in as numbers on the caller's monotonic scale, never read here.
"""

from __future__ import annotations

from datetime import UTC, datetime


class FeedClock:
    """`now(wall) = exchange time of a trade + (wall - when it entered its stream)`, taken
    over the trade that puts the clock furthest ahead, so an old trade read late (out of order,
    or a second replay of past data) never moves the clock back."""

    def __init__(self) -> None:
        self._offset: float | None = None  # exchange epoch seconds - wall seconds, at best

    def observe(self, exchange_time: datetime, entered_at: float) -> None:
        """A trade stamped `exchange_time` that entered its stream at wall time `entered_at`."""
        offset = exchange_time.timestamp() - entered_at
        if self._offset is None or offset > self._offset:
            self._offset = offset

    def now(self, wall: float) -> datetime | None:
        """The feed's time at wall time `wall`; None until a trade has been seen."""
        if self._offset is None:
            return None
        return datetime.fromtimestamp(self._offset + wall, UTC)
