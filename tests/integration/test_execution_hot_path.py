"""The live hot path (issue 16): from a signal's arrival to its order request, no database
read and one commit, the decision and its orders, before the request; and what that must not
cost: a halt from another process still refuses the very next signal, a signal delivered twice
is still a duplicate, and a crash between the record and the request never sends the order.

On PostgreSQL and on SQLite, with the loop as `trading-engine run` builds it
(`bootstrap.execution_loop`), orders to the GMO stand-in (a real HTTP server), and the kill
switch set by the real `trading-engine risk` command in another process. The store's round
trips are counted on its connections (adapters/eventstore/round_trips.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from support.cli import run_cli
from trading_engine.adapters.brokers.gmo import GmoBroker
from trading_engine.adapters.eventstore.postgres import postgres_event_store
from trading_engine.adapters.eventstore.round_trips import RoundTrips, count_round_trips
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.adapters.marketdata.in_process import InProcessLog
from trading_engine.adapters.signals.codec import signal_entry_fields
from trading_engine.adapters.signals.in_process_bus import (
    InProcessSignalPublisher,
    InProcessSignalSubscriber,
)
from trading_engine.adapters.signals.redis_bus import signal_stream
from trading_engine.app.bootstrap.execution import execution_loop
from trading_engine.app.execution.loop import ExecutionLoop
from trading_engine.app.runtime.config import load_settings
from trading_engine.domain.models import Signal
from trading_engine.domain.order import order_id_for
from trading_engine.domain.signal_decision import decision_id_for
from trading_engine.domain.values import OrderStatus
from trading_engine.ports.broker import OrderRequest
from trading_engine_standins.gmo import GmoStandIn

_n = iter(range(1_000_000))


@dataclass
class Backend:
    database_url: str
    open: Any  # () -> a new EventSourcedStore on the database (a new process would open one)


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = tmp_path / "events.sqlite3"
        return Backend(f"sqlite:///{path}", lambda: sqlite_event_store(path))
    pg_url: str = request.getfixturevalue("pg_url")
    schema: str = request.getfixturevalue("pg_schema")
    return Backend(f"{pg_url}?schema={schema}", lambda: postgres_event_store(pg_url, schema=schema))


@pytest.fixture
def standin(gmo_standin: Callable[..., GmoStandIn]) -> GmoStandIn:
    return gmo_standin(rate_limited=False)


def a_signal(action: str) -> Signal:
    return Signal(
        signal_id=f"hot-{next(_n)}",
        exchange="gmo",
        symbol="BTC_JPY",
        strategy="moving_average_cross",
        action=action,
        confidence=Decimal(1),
        price_ref=Decimal(5_000_000),
        timestamp=datetime.now(UTC),
        indicators={"fast_ma": 1.0},
        meta={},
    )


class MarkedBroker:
    """The real GMO adapter; each order request is marked in the round-trip sequence."""

    def __init__(self, broker: GmoBroker, trips: RoundTrips | None) -> None:
        self._broker, self._trips, self.name = broker, trips, broker.name

    def place_order(self, request: OrderRequest) -> str:
        if self._trips is not None:
            self._trips.note("request")
        return self._broker.place_order(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)


class Rig:
    """One execution process: its store, its loop, the in-process signal bus."""

    def __init__(self, backend: Backend, standin: GmoStandIn, log: InProcessLog, **broker: Any):
        self.store = backend.open()
        self.trips = count_round_trips(self.store)
        self.broker = GmoBroker(standin.base_url, "k", "s", timeout=2.0, **broker)
        self.log = log
        settings = load_settings(
            DATABASE_URL=backend.database_url,
            ORDER_TYPE="MARKET",
            ORDER_SIZE=Decimal("0.01"),
            ORDER_POLL_INTERVAL_SECONDS=60,  # polls here are explicit
        )
        self.loop: ExecutionLoop = execution_loop(
            settings,
            self.store,
            MarkedBroker(self.broker, self.trips),
            InProcessSignalSubscriber(log, "gmo", consumer="hot"),
        )

    def start(self) -> None:
        self.loop.start()
        self.loop.poll()  # the poll a start makes due: out of the way of what is measured

    def signal(self, action: str) -> tuple[Signal, list[str]]:
        """Publish one signal and handle it: the store's round trips meanwhile, with the
        order requests among them."""
        sent = a_signal(action)
        InProcessSignalPublisher(self.log).publish(sent)
        mark = self.trips.mark()
        assert self.loop.step(block_ms=0) == 1
        return sent, self.trips.kinds(since=mark)

    def close(self) -> None:
        self.loop.close()
        self.broker.close()
        self.store.close()


@pytest.fixture
def rig(backend: Backend, standin: GmoStandIn) -> Iterator[Rig]:
    made = Rig(backend, standin, InProcessLog())
    yield made
    made.close()


def risk(backend: Backend, tmp_path: Path, command: str) -> str:
    """`trading-engine risk COMMAND` in a process of its own, as an operator runs it: the
    halt must reach the loop from another process (process=True, never in this one)."""
    done = run_cli(
        "risk", command, "--reason", "desk says so", "--database-url", backend.database_url,
        env={"DATABASE_URL": None},
        cwd=tmp_path,  # no .env of the checkout
        process=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_signal_reaches_the_exchange_after_one_commit_and_no_read(
    rig: Rig, standin: GmoStandIn
) -> None:
    rig.start()
    for action in ("enter_long", "exit", "enter_long", "exit"):
        _, trips = rig.signal(action)
        # the decision and its order committed, the request, the exchange's answer committed
        assert trips == ["commit", "request", "commit"], action
    assert standin.placements() == 4
    assert rig.loop.stats.orders == 4


def test_a_halt_from_another_process_refuses_the_very_next_signal(
    rig: Rig, backend: Backend, standin: GmoStandIn, tmp_path: Path
) -> None:
    rig.start()
    _, trips = rig.signal("enter_long")
    assert trips == ["commit", "request", "commit"]

    assert "HALTED (desk says so)" in risk(backend, tmp_path, "halt")
    halted, trips = rig.signal("exit")
    assert "request" not in trips
    assert standin.placements() == 1
    decision = rig.store.find(decision_id_for(halted.signal_id))
    assert (decision.outcome, decision.trading_state) == ("refused", "HALTED")
    assert decision.reason.startswith("trading is HALTED (desk says so)")
    assert trips.count("read") >= 1  # the trading state read again: it changed

    assert "REDUCING" in risk(backend, tmp_path, "reduce")
    _, trips = rig.signal("exit")  # shrinks the position: sent
    assert "request" in trips
    assert standin.placements() == 2
    _, trips = rig.signal("enter_long")  # would grow it: refused
    assert "request" not in trips

    assert "ACTIVE" in risk(backend, tmp_path, "resume")
    _, trips = rig.signal("enter_long")
    assert "request" in trips
    _, trips = rig.signal("exit")  # nothing changed since: no read
    assert trips == ["commit", "request", "commit"]
    assert standin.placements() == 4
    assert (rig.loop.stats.refused, rig.loop.stats.approved) == (2, 4)


@pytest.mark.postgres
def test_a_halt_still_refuses_the_next_signal_after_the_watch_lost_its_connection(
    standin: GmoStandIn, pg_url: str, pg_schema: str, tmp_path: Path
) -> None:
    """The server ends the watch's LISTEN session (a restart, an operator, a pooler) and the
    halt's notification has nowhere to go: the next look finds the socket closed, and the
    trading state is read again."""
    backend = Backend(
        f"{pg_url}?schema={pg_schema}", lambda: postgres_event_store(pg_url, schema=pg_schema)
    )
    rig = Rig(backend, standin, InProcessLog())
    try:
        rig.start()
        _, trips = rig.signal("enter_long")
        assert trips == ["commit", "request", "commit"]
        with psycopg.connect(pg_url, autocommit=True) as conn:
            ended = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (f"trading-engine watch {pg_schema}",),
            ).fetchall()
        assert ended == [(True,)]
        risk(backend, tmp_path, "halt")
        _, trips = rig.signal("exit")
        assert "request" not in trips
        assert rig.loop.stats.refused == 1
        risk(backend, tmp_path, "resume")
        _, trips = rig.signal("exit")  # listening again
        assert "request" in trips
        _, trips = rig.signal("enter_long")
        assert trips == ["commit", "request", "commit"]
    finally:
        rig.close()


def test_a_signal_delivered_twice_is_a_duplicate_in_this_process_and_after_a_restart(
    rig: Rig, backend: Backend, standin: GmoStandIn
) -> None:
    rig.start()
    first, _ = rig.signal("enter_long")
    stream = signal_stream("gmo")
    rig.log.append(stream, signal_entry_fields(first))  # delivered again (a redelivery)
    assert rig.loop.step(block_ms=0) == 1
    assert rig.loop.stats.duplicates == 1
    assert standin.placements() == 1

    # a new process: nothing in memory; the store's refusal of the decision says it all
    again = Rig(backend, standin, rig.log)
    try:
        again.start()
        rig.log.append(stream, signal_entry_fields(first))
        mark = again.trips.mark()
        assert again.loop.step(block_ms=0) == 1
        assert again.loop.stats.duplicates == 1
        assert "request" not in again.trips.kinds(since=mark)
    finally:
        again.close()
    assert standin.placements() == 1
    order = rig.store.get_order(order_id_for(first.signal_id, 0))  # (the restart's
    assert (order.status, order.filled_size) == (OrderStatus.FILLED, Decimal("0.01"))  # fill)


class Crash(BaseException):
    """The process dies between the recorded decision and the order request."""


class CrashBeforeSending:
    def __init__(self, broker: GmoBroker) -> None:
        self._broker, self.name = broker, broker.name

    def place_order(self, request: OrderRequest) -> str:
        raise Crash

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)


def test_a_crash_between_the_record_and_the_request_never_sends_the_order(
    backend: Backend, standin: GmoStandIn
) -> None:
    log = InProcessLog()
    crashing = Rig(backend, standin, log)
    crashing.loop = execution_loop(
        load_settings(
            DATABASE_URL=backend.database_url,
            ORDER_TYPE="MARKET",
            ORDER_SIZE=Decimal("0.01"),
            ORDER_POLL_INTERVAL_SECONDS=60,
        ),
        crashing.store,
        CrashBeforeSending(crashing.broker),
        InProcessSignalSubscriber(log, "gmo", consumer="hot"),
    )
    crashing.start()
    lost = a_signal("enter_long")
    InProcessSignalPublisher(log).publish(lost)
    with pytest.raises(Crash):
        crashing.loop.step(block_ms=0)
    crashing.close()
    order_id = order_id_for(lost.signal_id, 0)

    restarted = Rig(backend, standin, log, lookup_delay=0.01)
    try:
        assert restarted.loop.start() == 1  # the signal, never acknowledged, comes back
        assert restarted.loop.stats.duplicates == 1  # ... and meets its recorded decision
        for _ in range(5):  # reconciliation and polls look for it; it is never sent
            restarted.loop.poll()
        order = restarted.store.get_order(order_id)
        assert (order.status, order.reject_code) == (OrderStatus.REJECTED, "PLACEMENT_NOT_FOUND")
        assert standin.placements() == 0
        _, trips = restarted.signal("enter_long")  # and the account trades on
        assert trips == ["commit", "request", "commit"]
        assert standin.placements() == 1
    finally:
        restarted.close()
