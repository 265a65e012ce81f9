"""Running loops as a service: stop cleanly on SIGTERM / SIGINT.

A signal only sets a flag; the loop finishes the batch in hand (stores, publishes,
acknowledges) before it looks at the flag again, so a stop never leaves half a batch.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("trading_engine.service")
_STOPS = (signal.SIGTERM, signal.SIGINT)
# A stop asked for before `stop_on_signals` was entered (while the process was importing).
_asked_early = threading.Event()


def listen_for_stop_early() -> None:
    """From now on SIGTERM / SIGINT are remembered, not fatal: the next `stop_on_signals`
    starts stopped. Called by the entry point of `run` before the heavy imports."""
    for sig in _STOPS:
        signal.signal(sig, lambda _signum, _frame: _asked_early.set())


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], bool]]:
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info(
            "received %s: finishing the batch in hand, then stopping", signal.Signals(signum).name
        )
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in _STOPS}
    if _asked_early.is_set():  # checked after installing ours: no request falls in between
        log.info("a stop was asked for during start-up: stopping before consuming")
        stop.set()
    try:
        yield stop.is_set
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
