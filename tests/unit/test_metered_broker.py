"""The metered broker in front of the simulated exchange: answers unchanged, every call timed,
errors counted by code and re-raised, counts exact under concurrent calls."""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from trading_engine.adapters.brokers.simulated import SimulatedExchange
from trading_engine.app.execution.metered_broker import (
    BUCKETS,
    ERRORS,
    LATENCY,
    METHODS,
    MeteredBroker,
)
from trading_engine.domain.values import OrderType, Side
from trading_engine.ports.broker import (
    OrderNotCancelable,
    OrderNotFound,
    OrderRejected,
    OrderRequest,
)
from trading_engine.ports.health import Sample


def a_request(client_id: str, order_type: OrderType = OrderType.MARKET, **terms) -> OrderRequest:
    return OrderRequest(
        client_order_id=client_id,
        symbol=terms.pop("symbol", "BTC_JPY"),
        side=Side.BUY,
        order_type=order_type,
        size=Decimal("0.01"),
        **terms,
    )


def latency_counts(samples: list[Sample]) -> dict[str, int]:
    """Observations per method: the count of the `+Inf` bucket."""
    return {s.labels[0][1]: s.buckets[-1][1] for s in samples if s.name == LATENCY}


def errors(samples: list[Sample]) -> dict[tuple[str, str], float]:
    return {(s.labels[0][1], s.labels[1][1]): s.value for s in samples if s.name == ERRORS}


def test_every_method_answers_as_the_exchange_does_and_is_timed() -> None:
    exchange = SimulatedExchange(fill_market_at="last_price")
    exchange.set_last_price("BTC_JPY", Decimal(5_000_000))
    metered = MeteredBroker(exchange)
    assert metered.inner is exchange
    assert metered.name == exchange.name

    filled = metered.place_order(a_request("c-1"))
    resting = metered.place_order(a_request("c-2", OrderType.LIMIT, price=Decimal(4_000_000)))
    assert metered.fetch_order(filled) == exchange.fetch_order(filled)
    assert metered.fetch_orders([filled, resting]) == exchange.fetch_orders([filled, resting])
    assert metered.fetch_executions(filled) == exchange.fetch_executions(filled)
    assert len(metered.fetch_executions(filled)) == 1
    assert metered.find_order(a_request("c-2"), datetime(2026, 1, 1, tzinfo=UTC)) is not None
    assert [o.exchange_order_id for o in metered.open_orders("BTC_JPY")] == [resting]
    assert metered.recent_executions("BTC_JPY") == exchange.recent_executions("BTC_JPY")
    assert metered.balances() == exchange.balances()
    assert metered.positions("BTC_JPY") == exchange.positions("BTC_JPY")
    metered.cancel_order(resting)
    assert exchange.open_orders("BTC_JPY") == []

    samples = metered.samples()
    calls = dict.fromkeys(METHODS, 1) | {"place_order": 2, "fetch_executions": 2}
    assert latency_counts(samples) == calls
    assert errors(samples) == {}
    for sample in samples:
        assert sample.kind == "histogram"
        assert [le for le, _ in sample.buckets] == list(BUCKETS)
        counts = [n for _, n in sample.buckets]
        assert counts == sorted(counts)  # cumulative
        assert sample.value >= 0


def test_errors_are_counted_by_code_and_raised_unchanged() -> None:
    exchange = SimulatedExchange()
    metered = MeteredBroker(exchange)
    with pytest.raises(OrderRejected) as rejected:
        metered.place_order(a_request("c-1", symbol="DOGE_XYZ"))
    assert rejected.value.code == "ERR-5106"
    assert "unknown symbol" in rejected.value.message
    with pytest.raises(OrderNotFound):
        metered.fetch_order("sim-404")
    with pytest.raises(OrderNotFound):
        metered.cancel_order("sim-404")
    with pytest.raises(OrderRejected):
        metered.place_order(a_request("c-2", symbol="DOGE_XYZ"))

    samples = metered.samples()
    assert errors(samples) == {
        ("cancel_order", "ERR-5123"): 1,
        ("fetch_order", "ERR-5123"): 1,
        ("place_order", "ERR-5106"): 2,
    }
    counts = latency_counts(samples)  # a failed request took time too
    assert (counts["place_order"], counts["fetch_order"], counts["cancel_order"]) == (2, 1, 1)


def test_an_error_without_a_code_is_counted_by_its_type() -> None:
    class Unwired(SimulatedExchange):
        """An exchange whose cancel answers without an error code."""

        def cancel_order(self, exchange_order_id: str) -> None:
            raise OrderNotCancelable(f"{exchange_order_id} is changing")

    metered = MeteredBroker(Unwired())
    with pytest.raises(OrderNotCancelable):
        metered.cancel_order("sim-1")
    assert errors(metered.samples()) == {("cancel_order", "OrderNotCancelable"): 1}


def test_each_duration_lands_in_its_bucket() -> None:
    # The clock is given, so the durations are exact: 3 ms, 0.3 s, and 20 s (past every
    # finite bound).
    ticks = iter([0.0, 0.003, 1.0, 1.3, 2.0, 22.0])
    metered = MeteredBroker(SimulatedExchange(), perf_counter=lambda: next(ticks))
    for _ in range(3):
        metered.balances()
    (balances,) = [s for s in metered.samples() if s.labels == (("method", "balances"),)]
    assert balances.value == pytest.approx(20.303)
    cumulative = dict(balances.buckets)
    assert (cumulative[0.005], cumulative[0.25], cumulative[0.5]) == (1, 1, 2)
    assert (cumulative[10.0], cumulative[math.inf]) == (2, 3)


def test_counts_stay_exact_when_threads_call_and_scrape_at_once() -> None:
    metered = MeteredBroker(SimulatedExchange())
    threads_n, calls_n = 8, 300
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            metered.samples()

    def call() -> None:
        for _ in range(calls_n):
            metered.balances()
            with pytest.raises(OrderNotFound):
                metered.fetch_order("sim-404")

    scraper = threading.Thread(target=scrape)
    scraper.start()
    callers = [threading.Thread(target=call) for _ in range(threads_n)]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(timeout=60)
    done.set()
    scraper.join(timeout=60)
    samples = metered.samples()
    counts = latency_counts(samples)
    assert counts["balances"] == counts["fetch_order"] == threads_n * calls_n
    assert errors(samples) == {("fetch_order", "ERR-5123"): threads_n * calls_n}
