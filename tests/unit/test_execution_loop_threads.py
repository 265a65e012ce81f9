"""`ExecutionLoop.run`, the live service: order polls on a thread of their own, so a signal
never waits behind a poll, and the two threads never act on half a state (the position and
the live orders' unfilled size move together, in the save that records a fill)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from trading_engine.adapters.brokers.gmo import GmoBroker
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.adapters.marketdata.in_process import InProcessLog
from trading_engine.adapters.signals.in_process_bus import (
    InProcessSignalPublisher,
    InProcessSignalSubscriber,
)
from trading_engine.app.bootstrap.execution import execution_loop
from trading_engine.app.execution.loop import ExecutionLoop
from trading_engine.app.runtime.config import load_settings
from trading_engine.domain.models import Signal
from trading_engine.domain.order import order_id_for
from trading_engine.domain.values import OrderStatus, Side
from trading_engine.ports.broker import ExchangeOrder
from trading_engine_standins.gmo import GmoStandIn

_n = iter(range(1_000_000))


def a_signal(action: str) -> Signal:
    return Signal(
        signal_id=f"thr-{next(_n)}",
        exchange="gmo",
        symbol="BTC_JPY",
        strategy="rsi",
        action=action,
        confidence=Decimal(1),
        price_ref=Decimal(5_000_000),
        timestamp=datetime.now(UTC),
        indicators={},
        meta={},
    )


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def standin(gmo_standin: Callable[..., GmoStandIn]) -> GmoStandIn:
    return gmo_standin(rate_limited=False)


class Running:
    """`loop.run()` on a thread, as `trading-engine run` runs it, until `stop()`."""

    def __init__(self, loop: ExecutionLoop) -> None:
        self._stop = threading.Event()
        self.failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(loop,), daemon=True)
        self._thread.start()

    def _run(self, loop: ExecutionLoop) -> None:
        try:
            loop.run(self._stop.is_set, block_ms=20)
        except BaseException as error:
            self.failure.append(error)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()
        assert not self.failure, self.failure


class HeldPolls:
    """The real GMO adapter, whose order-status request (the first of each poll) waits for
    `release` once `armed`: a poll that takes as long as the test wants."""

    def __init__(self, broker: GmoBroker) -> None:
        self._broker, self.name = broker, broker.name
        self.armed, self.holding, self.release = False, threading.Event(), threading.Event()

    def fetch_orders(self, exchange_order_ids: Sequence[str]) -> Sequence[ExchangeOrder]:
        if self.armed:
            self.holding.set()
            self.release.wait(timeout=60)
        return self._broker.fetch_orders(exchange_order_ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)


def test_a_signal_goes_out_while_a_poll_is_waiting_for_the_exchange(
    tmp_path: Path, standin: GmoStandIn
) -> None:
    store = sqlite_event_store(tmp_path / "events.sqlite3")
    broker = GmoBroker(standin.base_url, "k", "s", timeout=5.0)
    held = HeldPolls(broker)
    log = InProcessLog()
    settings = load_settings(ORDER_TYPE="MARKET", ORDER_SIZE=Decimal("0.01"))
    loop = execution_loop(
        settings, store, held, InProcessSignalSubscriber(log, "gmo", consumer="t")
    )
    loop.start()
    held.armed = True
    running = Running(loop)
    try:
        wait_until(held.holding.is_set, "the first poll to ask the exchange")
        signal = a_signal("enter_long")
        InProcessSignalPublisher(log).publish(signal)
        # sent while the poll still waits for its answer (which it gets only afterwards)
        wait_until(lambda: standin.placements() == 1, "the order request during the poll")
        assert not held.release.is_set()
    finally:
        held.release.set()
        running.stop()
        loop.close()
    order = store.get_order(order_id_for(signal.signal_id, 0))
    assert order.exchange_order_id is not None
    broker.close()
    store.close()


def test_signals_and_polls_on_two_threads_never_act_on_half_a_fill(
    tmp_path: Path, standin: GmoStandIn
) -> None:
    """Entries and exits in a burst while polls record fills on the other thread, every
    10 ms: each entry buys once, each exit sells exactly what was bought (a decision that
    saw a fill in the position and again in the live order's unfilled size would sell
    twice as much; one that saw it in neither would buy again)."""
    store = sqlite_event_store(tmp_path / "events.sqlite3")
    broker = GmoBroker(standin.base_url, "k", "s", timeout=5.0, requests_per_second=1000)
    log = InProcessLog()
    settings = load_settings(
        ORDER_TYPE="MARKET", ORDER_SIZE=Decimal("0.01"), ORDER_POLL_INTERVAL_SECONDS=0.01
    )
    loop = execution_loop(
        settings, store, broker, InProcessSignalSubscriber(log, "gmo", consumer="t")
    )
    loop.start()
    publisher = InProcessSignalPublisher(log)
    sent = [a_signal("enter_long" if n % 2 == 0 else "exit") for n in range(40)]
    running = Running(loop)
    try:
        for signal in sent:
            publisher.publish(signal)
            time.sleep(0.003)  # some signals between polls, some during them
        wait_until(lambda: loop.stats.signals == len(sent), "every signal handled")
        wait_until(lambda: loop.stats.polls > 5, "a few more polls")
    finally:
        running.stop()
        loop.close()
    loop.poll()  # the last fills
    orders = [store.get_order(order_id_for(s.signal_id, 0)) for s in sent]
    assert [o.side for o in orders] == [Side.BUY, Side.SELL] * 20
    assert {o.size for o in orders} == {Decimal("0.01")}
    assert {o.status for o in orders} == {OrderStatus.FILLED}
    assert store.find_position("gmo", "BTC_JPY").quantity == 0
    assert standin.placements() == len(sent)
    broker.close()
    store.close()
