"""A metered broker asked to `serialize` (an adapter that may not take concurrent calls, such
as a ccxt exchange and its nonce) lets one call through at a time, from any thread: the
execution loop sends orders on one thread while it polls on another."""

from __future__ import annotations

import threading
import time
from typing import Any

from trading_engine.app.execution.metered_broker import MeteredBroker


class Counting:
    """Counts the calls inside it at once (each stays a little while)."""

    name = "some-ccxt-exchange"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.inside = self.most = 0

    def _visit(self) -> None:
        with self._lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        time.sleep(0.002)
        with self._lock:
            self.inside -= 1

    def place_order(self, request: Any) -> str:
        self._visit()
        return "1"

    def fetch_orders(self, ids: Any) -> list[Any]:
        self._visit()
        return []


def hammer(broker: MeteredBroker) -> None:
    def placing() -> None:
        for _ in range(20):
            broker.place_order(None)  # type: ignore[arg-type]

    def polling() -> None:
        for _ in range(20):
            broker.fetch_orders([])

    threads = [threading.Thread(target=job) for job in (placing, polling, placing, polling)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_serialized_calls_never_overlap() -> None:
    inner = Counting()
    broker = MeteredBroker(inner, serialize=True)  # type: ignore[arg-type]
    hammer(broker)
    assert inner.most == 1
    observed = {s.labels[0][1]: s.buckets[-1][1] for s in broker.samples() if s.buckets}
    assert (observed["place_order"], observed["fetch_orders"]) == (40, 40)
