"""A sliding-window rate limiter: at most `limit` calls in any `window` seconds.

GMO counts GET and POST separately (20/s each on tier 1); one limiter per budget. Waiting
here is cheaper than an ERR-5003 round trip and keeps the account in good standing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self,
        limit: int,
        window: float = 1.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must be at least 1 call per window, got {limit}")
        self.limit, self.window = limit, window
        self._monotonic, self._sleep = monotonic, sleep
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait until a call is allowed, then count it. Returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._monotonic()
                while self._calls and now - self._calls[0] >= self.window:
                    self._calls.popleft()
                if len(self._calls) < self.limit:
                    self._calls.append(now)
                    return waited
                delay = self.window - (now - self._calls[0])
            self._sleep(delay)
            waited += delay
