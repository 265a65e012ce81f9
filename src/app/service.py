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


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], bool]]:
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info(
            "received %s: finishing the batch in hand, then stopping", signal.Signals(signum).name
        )
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop.is_set
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
