"""A broker that times every exchange request and counts its errors by code, for `/metrics`.

It stands in front of the real broker (the execution loop, the order monitor and
reconciliation see only the Broker port) and changes nothing about a call: same arguments,
same answer, the same exception re-raised. The execution threads record while the health
endpoint's thread reads, hence the lock.

The execution loop sends orders on one thread and polls on another (app/execution/loop.py).
GMO's adapter takes concurrent calls (one HTTP client, a locked rate limiter, no nonce); an
adapter that may not (ccxt's exchanges count a nonce per request: two calls in the same
millisecond would share one) is `serialize`d here: one call at a time, the wait not timed.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any, TypeVar

from trading_engine.ports.broker import (
    Balance,
    Broker,
    BrokerError,
    ExchangeExecution,
    ExchangeOrder,
    ExchangePosition,
    OrderRequest,
)
from trading_engine.ports.health import Sample

T = TypeVar("T")

METHODS = (
    "place_order",
    "find_order",
    "cancel_order",
    "fetch_order",
    "fetch_orders",
    "fetch_executions",
    "open_orders",
    "recent_executions",
    "balances",
    "positions",
)
# Seconds, upper bounds: a REST round trip takes tens of milliseconds when well, seconds
# when the exchange is struggling; the last bound is the client's timeout territory.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)

LATENCY = "trading_engine_exchange_request_seconds"
ERRORS = "trading_engine_exchange_errors_total"


class _Latency:
    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)  # per bucket, not cumulative
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.total += seconds
        self.counts[next(i for i, le in enumerate(BUCKETS) if seconds <= le)] += 1

    def cumulative(self) -> tuple[tuple[float, int], ...]:
        running, out = 0, []
        for le, n in zip(BUCKETS, self.counts, strict=True):
            running += n
            out.append((le, running))
        return tuple(out)


class MeteredBroker:
    """A `Broker` delegating every call to `inner`, timed and with its errors counted."""

    def __init__(
        self,
        inner: Broker,
        *,
        perf_counter: Callable[[], float] = time.perf_counter,
        serialize: bool = False,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self._now = perf_counter
        self._lock = threading.Lock()
        self._one_at_a_time: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if serialize else contextlib.nullcontext()
        )
        # every method from the start: a series that exists at 0 gives `rate()` a baseline
        self._latency = {method: _Latency() for method in METHODS}
        self._errors: dict[tuple[str, str], int] = {}

    # ----- metrics --------------------------------------------------------------------------

    def samples(self) -> list[Sample]:
        with self._lock:
            latency = [(m, h.total, h.cumulative()) for m, h in self._latency.items()]
            errors = sorted(self._errors.items())
        samples = [
            Sample(
                LATENCY,
                "histogram",
                "Time taken by exchange requests, by broker method (errors included).",
                total,
                (("method", method),),
                buckets,
            )
            for method, total, buckets in latency
        ]
        samples += [
            Sample(
                ERRORS,
                "counter",
                "Exchange requests that failed, by broker method and exchange error code.",
                n,
                (("method", method), ("code", code)),
            )
            for (method, code), n in errors
        ]
        return samples

    def _call(self, method: str, call: Callable[[], T]) -> T:
        with self._one_at_a_time:
            started = self._now()
            try:
                return call()
            except BrokerError as error:
                code = error.code or type(error).__name__
                with self._lock:
                    self._errors[(method, code)] = self._errors.get((method, code), 0) + 1
                raise
            finally:
                elapsed = self._now() - started
                with self._lock:
                    self._latency[method].observe(elapsed)

    # ----- the Broker port --------------------------------------------------------------------

    def place_order(self, request: OrderRequest) -> str:
        return self._call("place_order", lambda: self.inner.place_order(request))

    def find_order(
        self, request: OrderRequest, placed_after: datetime, exclude: Collection[str] = ()
    ) -> ExchangeOrder | None:
        return self._call(
            "find_order", lambda: self.inner.find_order(request, placed_after, exclude)
        )

    def cancel_order(self, exchange_order_id: str) -> None:
        self._call("cancel_order", lambda: self.inner.cancel_order(exchange_order_id))

    def fetch_order(self, exchange_order_id: str) -> ExchangeOrder:
        return self._call("fetch_order", lambda: self.inner.fetch_order(exchange_order_id))

    def fetch_orders(self, exchange_order_ids: Sequence[str]) -> Sequence[ExchangeOrder]:
        return self._call("fetch_orders", lambda: self.inner.fetch_orders(exchange_order_ids))

    def fetch_executions(self, exchange_order_id: str) -> Sequence[ExchangeExecution]:
        return self._call(
            "fetch_executions", lambda: self.inner.fetch_executions(exchange_order_id)
        )

    def open_orders(self, symbol: str) -> Sequence[ExchangeOrder]:
        return self._call("open_orders", lambda: self.inner.open_orders(symbol))

    def recent_executions(self, symbol: str) -> Sequence[ExchangeExecution]:
        return self._call("recent_executions", lambda: self.inner.recent_executions(symbol))

    def balances(self) -> Sequence[Balance]:
        return self._call("balances", self.inner.balances)

    def positions(self, symbol: str) -> Sequence[ExchangePosition]:
        return self._call("positions", lambda: self.inner.positions(symbol))

    def close(self) -> None:
        """Closes the inner broker's connections, where it has any."""
        closer: Any = getattr(self.inner, "close", None)
        if callable(closer):
            closer()
