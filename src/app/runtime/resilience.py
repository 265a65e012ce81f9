"""Waiting out a server that is away, instead of stopping the service.

When Redis or PostgreSQL stops answering mid-loop, the loop's in-memory state (open bars,
orders being followed) may be half a step ahead of what was stored and acknowledged. Rather
than patch it up, a loop is restarted the way a new process would start: recover the pending
entries, reconcile with the exchange. That path is the one the crash tests prove, so a fault
in a server costs a wait, never an entry. Waits double from `first` up to `most` seconds;
while a loop waits, readiness says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger("trading_engine.service")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    first: float = 0.5
    most: float = 30.0

    def delay(self, attempt: int) -> float:
        """The wait before retry number `attempt` (1, 2, ...)."""
        return min(self.most, self.first * 2 ** min(attempt - 1, 30))


class LoopHealth:
    """Which loops are waiting out a fault, and why (read by the readiness check)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, str] = {}
        self.retries = 0

    def waiting(self, loop: str, reason: str) -> None:
        with self._lock:
            self._waiting[loop] = reason
            self.retries += 1

    def recovered(self, loop: str) -> None:
        with self._lock:
            self._waiting.pop(loop, None)

    def problem(self) -> str | None:
        with self._lock:
            if not self._waiting:
                return None
            return "; ".join(f"{loop} waiting: {why}" for loop, why in self._waiting.items())


def run_resilient(
    loop: str,
    run: Callable[[], T],
    restart: Callable[[], object],
    *,
    transient: tuple[type[BaseException], ...],
    should_stop: Callable[[], bool],
    health: LoopHealth,
    backoff: Backoff = Backoff(),
    monotonic: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> T | None:
    """`run()` until it returns; on a transient error, wait, `restart()` and run again.
    Returns None if a stop was asked for while waiting (nothing in hand to finish)."""
    attempt = 0
    while True:
        try:
            if attempt:
                restart()
                health.recovered(loop)
                log.warning("%s loop: restarted (retry %d)", loop, attempt)
            return run()
        except transient as error:
            attempt += 1
            delay = backoff.delay(attempt)
            reason = f"{type(error).__name__}: {error}"
            health.waiting(loop, reason)
            log.warning(
                "%s loop: %s; retry %d in %.1fs (unacknowledged entries are kept)",
                loop,
                reason,
                attempt,
                delay,
            )
            deadline = monotonic() + delay
            while monotonic() < deadline:
                if should_stop():
                    log.warning("%s loop: stop asked while waiting; stopping", loop)
                    return None
                pause(min(0.1, max(0.0, deadline - monotonic())))
