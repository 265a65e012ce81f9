"""Waiting out a server that is away (run_resilient), and readiness checks that never hang."""

from __future__ import annotations

import threading
import time

import pytest

from trading_engine.adapters.marketdata.consumer_groups import GroupState as _GroupState
from trading_engine.adapters.signals.redis_bus import EXECUTION_GROUP
from trading_engine.app.bootstrap.health import (
    CONSUMER_LAG_READY,
    CONSUMER_PENDING_READY,
    _groups_problem,
)
from trading_engine.app.bootstrap.strategy import STRATEGY_GROUP
from trading_engine.app.runtime.health import Readiness
from trading_engine.app.runtime.resilience import Backoff, LoopHealth, run_resilient


class Away(Exception):
    """Stands for a connection error."""


class FakeTime:
    """A clock the waits advance, so backoff is checked without sleeping."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def pause(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_backoff_doubles_up_to_its_ceiling() -> None:
    backoff = Backoff(first=0.5, most=4.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_transient_error_is_waited_out_and_the_loop_restarted() -> None:
    clock, health = FakeTime(), LoopHealth()
    failures = iter([Away("down"), Away("still down"), None])
    restarts: list[tuple[float, str | None]] = []

    def run() -> str:
        failure = next(failures)
        if failure is not None:
            raise failure
        return "done"

    result = run_resilient(
        "strategy",
        run,
        lambda: restarts.append((clock.now, health.problem())),
        transient=(Away,),
        should_stop=lambda: False,
        health=health,
        backoff=Backoff(first=1.0, most=30.0),
        monotonic=clock.monotonic,
        pause=clock.pause,
    )
    assert result == "done"
    # waited 1 s, then 2 s; not ready while it waited
    assert restarts == [
        (pytest.approx(1.0), "strategy waiting: Away: down"),
        (pytest.approx(3.0), "strategy waiting: Away: still down"),
    ]
    assert health.problem() is None  # ready again once restarted
    assert health.retries == 2


def test_an_error_that_is_not_transient_is_raised() -> None:
    def run() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        run_resilient(
            "execution",
            run,
            lambda: None,
            transient=(Away,),
            should_stop=lambda: False,
            health=LoopHealth(),
        )


def test_a_stop_while_waiting_returns_none_at_once() -> None:
    clock = FakeTime()
    stop = threading.Event()

    def run() -> None:
        stop.set()  # SIGTERM arrives while the server is away
        raise Away("down")

    result = run_resilient(
        "strategy",
        run,
        lambda: pytest.fail("no restart after a stop"),
        transient=(Away,),
        should_stop=stop.is_set,
        health=LoopHealth(),
        backoff=Backoff(first=30.0),
        monotonic=clock.monotonic,
        pause=clock.pause,
    )
    assert result is None
    assert sum(clock.slept) == 0


def test_a_check_that_hangs_fails_and_the_probe_answers() -> None:
    release = threading.Event()

    def hangs() -> str | None:
        release.wait(10)
        return None

    readiness = Readiness({"fine": lambda: None, "dead server": hangs}, timeout=0.3)
    started = time.monotonic()
    ready, report = readiness.report()
    elapsed = time.monotonic() - started
    release.set()
    assert not ready
    assert report["checks"]["dead server"] == {"ok": False, "detail": "no answer within 0.3s"}
    assert report["checks"]["fine"]["ok"]
    assert elapsed < 5  # bounded by the check timeout, not by the hanging call


def test_consumer_groups_readiness_counts_lag_everywhere_and_pending_for_signals() -> None:
    market, signals = "md:trade", "signal:gmo"
    busy_bars = _GroupState(market, STRATEGY_GROUP, CONSUMER_PENDING_READY * 3, 0)
    assert _groups_problem([busy_bars]) is None  # open bars hold their trades by design
    behind = _GroupState(market, STRATEGY_GROUP, 0, CONSUMER_LAG_READY + 1)
    assert _groups_problem([behind]) == (
        f"{STRATEGY_GROUP} is {CONSUMER_LAG_READY + 1} entries behind on {market}"
    )
    stuck = _GroupState(signals, EXECUTION_GROUP, CONSUMER_PENDING_READY + 1, 0)
    assert _groups_problem([busy_bars, stuck]) == (
        f"{EXECUTION_GROUP} has {CONSUMER_PENDING_READY + 1} entries pending on {signals}"
    )
    unknown_lag = _GroupState(signals, EXECUTION_GROUP, 3, None)
    assert _groups_problem([unknown_lag]) is None
