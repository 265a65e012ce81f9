"""`trading-engine run` (execution only) against a GMO stand-in that misbehaves: answers late,
with 5xx, ERR-5003, maintenance, or drops the connection after making the order; once the
engine is also SIGKILLed in the middle of a lost placement and restarted.

Each scenario sends BUY/SELL signals one at a time over Redis, injecting its faults into the
calls of some of them, and waits for the engine to settle each signal (handled, every order
final) before the next, so every step has one expected outcome. After a SIGTERM (exit 0):

(a) no duplicate: the stand-in holds exactly the orders the engine accepted, one engine
    order per exchange order and per (signal, leg);
(b) every engine order agrees with the stand-in (status, executed size), and an order
    without an exchange id is REJECTED (never left NEW);
(c) each step's order ended as expected, refusals carrying the exchange's code;
(d) the projection tables equal a rebuild from the log (`trading-engine projections
    rebuild`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from support.cli import run_cli
from support.engine_process import EngineProcess, engine_env, wait_until
from support.private_servers import free_port
from support.projection_rig import Rig, postgres_rig
from trading_engine.adapters.signals.redis_bus import RedisSignalPublisher
from trading_engine.app.execution.reconciliation import orders_in_log
from trading_engine.domain.models import Signal
from trading_engine_standins.gmo import GmoStandIn

pytestmark = pytest.mark.postgres

KEY, SECRET = "fault-key", "fault-secret"
SYMBOL = "BTC"  # spot: buys and sells both go through /v1/order
TIMEOUT = 1.0  # REST_TIMEOUT_SECONDS: "slow" is 0.4-0.9 s, "too slow" 1.6 s
SLOW, TOO_SLOW = 0.4, 1.6
LOST = "PLACEMENT_NOT_FOUND"  # the engine's code: no answer and not at the exchange
STEP_TIMEOUT = 30.0
RECONCILED = "ReconciliationRun.Completed"


@dataclass(frozen=True)
class Fault:
    kind: str  # a GmoStandIn method: delay_next, http_error_next, fail_next, drop_next
    path: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def inject(self, standin: GmoStandIn) -> int:
        getattr(standin, self.kind)(self.path, **self.kwargs)
        return int(self.kwargs.get("times", 1))


@dataclass(frozen=True)
class Step:
    action: str  # enter_long (a BUY when flat) or exit (a SELL when long)
    expect: str | None  # FILLED, a reject code, or None: no order at all
    faults: tuple[Fault, ...] = ()
    maintenance: bool = False  # the stand-in is in maintenance while this step runs
    kill: bool = False  # SIGKILL the engine mid-placement, then restart it


def delay(path: str, seconds: float, accept: bool = True, times: int = 1) -> Fault:
    return Fault("delay_next", path, {"seconds": seconds, "accept": accept, "times": times})


def http(path: str, status: int = 503, times: int = 1) -> Fault:
    return Fault("http_error_next", path, {"http_status": status, "times": times})


def fail(path: str, code: str = "ERR-5003", times: int = 1) -> Fault:
    return Fault("fail_next", path, {"code": code, "times": times})


def drop(path: str, accept: bool = True) -> Fault:
    return Fault("drop_next", path, {"accept": accept})


ORDER, ORDERS, LATEST = "/v1/order", "/v1/orders", "/v1/latestExecutions"

SCENARIOS: dict[str, list[Step]] = {
    "slow": [
        Step("enter_long", "FILLED", (delay(ORDER, SLOW),)),
        # answer later than the timeout, the order made: found by the lost-placement lookup
        Step("exit", "FILLED", (delay(ORDER, TOO_SLOW),)),
        # the order made only after the timeout (the request sat in a queue)
        Step("enter_long", "FILLED", (delay(ORDER, TOO_SLOW, accept=False),)),
        Step("exit", "FILLED", (delay(ORDERS, TOO_SLOW), delay(LATEST, TOO_SLOW))),
        Step("enter_long", "FILLED", (delay(ORDER, 0.9),)),
        Step("exit", "FILLED"),
        Step("enter_long", "FILLED", (delay(ORDER, TOO_SLOW),)),
        Step("exit", "FILLED"),
    ],
    "http_5xx": [
        Step("enter_long", LOST, (http(ORDER, 503),)),
        Step("enter_long", "FILLED"),
        Step("exit", LOST, (http(ORDER, 500),)),
        Step("exit", "FILLED", (http(ORDERS, 502, times=2), http(LATEST, 503))),
        # the lookup that follows meets a 5xx too: it reads again
        Step("enter_long", LOST, (http(ORDER, 502), http("/v1/activeOrders", 503))),
        Step("enter_long", "FILLED"),
        Step("exit", "FILLED"),
        Step("exit", None),  # flat: nothing to sell
    ],
    "rate_limited": [
        Step("enter_long", "FILLED", (fail(ORDER),)),  # refused before looking: sent again
        Step("exit", "ERR-5003", (fail(ORDER, times=4),)),  # still refused: the moment passed
        Step("exit", "FILLED", (fail(ORDER, times=3),)),
        Step("enter_long", "FILLED", (fail(ORDERS, times=3), fail(LATEST, times=2))),
        Step("exit", "FILLED"),
        Step("enter_long", "FILLED", (fail(ORDER, times=2),)),
        Step("exit", "FILLED"),
    ],
    "maintenance": [
        Step("enter_long", "FILLED"),
        Step("exit", "ERR-5201", maintenance=True),
        Step("exit", "ERR-5201", maintenance=True),
        Step("exit", "FILLED"),
        Step("enter_long", "FILLED"),
        Step("exit", "FILLED"),
    ],
    "drop_after_accept": [
        Step("enter_long", "FILLED", (drop(ORDER),)),
        Step("exit", LOST, (drop(ORDER, accept=False),)),
        Step("exit", "FILLED", (drop(ORDER),)),
        # the lookup fails too (the exchange goes into maintenance right after): the order is
        # left NEW without an id, and the order monitor finds it on a later poll
        Step("enter_long", "FILLED", (drop(ORDER), fail("/v1/activeOrders", "ERR-5201", 3))),
        Step("exit", "FILLED", (drop(ORDERS),)),
        # an order that was never made, lost soon after the one the monitor found: the
        # lookup must not take that one for it
        Step("enter_long", LOST, (http(ORDER, 503),)),
        Step("enter_long", "FILLED"),
        Step("exit", "FILLED"),
    ],
    "sigkill_after_drop": [
        Step("enter_long", "FILLED"),
        # the answer is lost and the lookup hangs: the engine dies before it learns the id,
        # and the restart's reconciliation must find the order
        Step(
            "exit",
            "FILLED",
            (drop(ORDER), delay("/v1/activeOrders", 30.0, times=50)),
            kill=True,
        ),
        Step("enter_long", "FILLED"),
        # a lost placement of the same terms soon after the restart: the order found by the
        # reconciliation is not its
        Step("exit", LOST, (http(ORDER, 503),)),
        Step("exit", "FILLED"),
        Step("enter_long", "FILLED"),
        Step("exit", "FILLED"),
    ],
}


@pytest.fixture
def standin(gmo_standin: Callable[..., GmoStandIn]) -> GmoStandIn:
    return gmo_standin(KEY, SECRET)


def a_signal(run: str, number: int, action: str, price: Decimal) -> Signal:
    return Signal(
        signal_id=f"{run}-{number}",
        exchange="gmo",
        symbol=SYMBOL,
        strategy="fault_test",
        action=action,
        confidence=Decimal("0.8"),
        price_ref=price,
        timestamp=datetime.now(UTC),
    )


def settled(engine: EngineProcess, rig: Rig) -> bool:
    """Every signal handled and every order final: the engine has nothing left to find out."""
    if not engine.handled_every_signal():
        return False
    return all(o.is_terminal for o in orders_in_log(rig.log, "gmo"))


def unsettled(engine: EngineProcess, rig: Rig) -> str:
    live = [o for o in orders_in_log(rig.log, "gmo") if not o.is_terminal]
    lines = [f"{o.id} {o.side} {o.status} exchange id {o.exchange_order_id}" for o in live]
    return "\n".join(["orders not final:", *lines, engine.log_tail(6000)])


def table(rig: Rig, name: str) -> list[dict[str, Any]]:
    return rig.store.rows(name)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_exchange_faults_leave_no_duplicate_and_a_consistent_state(
    scenario: str,
    standin: GmoStandIn,
    pg_url: str,
    pg_schema: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    steps = SCENARIOS[scenario]
    database_url = f"{pg_url}?schema={pg_schema}"
    health_port = free_port()
    env = engine_env(
        base_url=standin.base_url,
        api_key=KEY,
        api_secret=SECRET,
        redis_url=redis_url,
        database_url=database_url,
        prefix=redis_prefix,
        SYMBOLS=SYMBOL,
        ORDER_TYPE="MARKET",
        ORDER_SIZE="0.01",
        REST_TIMEOUT_SECONDS=str(TIMEOUT),
        ORDER_POLL_INTERVAL_SECONDS="0.2",
        PROJECTION_POLL_INTERVAL_SECONDS="0.2",
        LOST_ORDER_AFTER="3",
        # the figures are about faults, not risk: no halt on a run of small losses
        MAX_CONSECUTIVE_LOSSES="1000",
        MAX_DRAWDOWN_PCT="100",
        HEALTH_PORT=str(health_port),
    )
    client = redis.Redis.from_url(redis_url)
    publisher = RedisSignalPublisher(client, stream_prefix=f"{redis_prefix}signal:")
    engine = EngineProcess(env, tmp_path, client)
    run = f"{scenario}-{uuid.uuid4().hex[:6]}"
    rig: Rig | None = None
    injected = 0
    signals: list[Signal] = []
    try:
        engine.start()
        rig = postgres_rig(pg_url, pg_schema)
        price = Decimal(5_000_000)
        for number, step in enumerate(steps):
            price += 20_000  # rising: every round trip wins, risk never steps in
            standin.set_last_price(SYMBOL, price)
            for fault in step.faults:
                injected += fault.inject(standin)
            if step.maintenance:
                standin.maintenance = True
                injected += 1
            signal = a_signal(run, number, step.action, price)
            signals.append(signal)
            placed_before = standin.placements()
            assert publisher.publish(signal)
            if step.kill:
                injected -= kill_mid_lookup(engine, standin, placed_before)
                # the kill landed between "order made" and "answer stored"
                unplaced = [o for o in orders_in_log(rig.log, "gmo") if not o.is_terminal]
                assert [o.exchange_order_id for o in unplaced] == [None], unplaced
                engine.start()  # start-up reconciliation must find the order
            wait_until(
                lambda: settled(engine, rig),
                STEP_TIMEOUT,
                f"{scenario} step {number}",
                lambda: unsettled(engine, rig),
            )
            if step.maintenance:
                ready = httpx.get(f"http://127.0.0.1:{health_port}/readyz", timeout=10)
                assert (ready.status_code, "MAINTENANCE" in ready.text) == (503, True), ready.text
                standin.maintenance = False
        report = engine.stop()
        assert "projections_failed" not in report, report
        if any(step.kill for step in steps):
            # the restart found the lost placement, and the signal it had not acknowledged
            # came back and was recognised as already decided
            runs = [r.event for r in rig.log.read_log(1, 10_000) if r.name == RECONCILED]
            assert [done.placements_found for done in runs] == [0, 1], engine.log_tail()
            assert report["execution"]["duplicates"] == 1, report
        figures = check_outcome(scenario, steps, signals, standin, rig, injected, engine, tmp_path)
        with capsys.disabled():
            print(f"\n{figures}")
    finally:
        engine.kill()
        if rig is not None:
            rig.close()
        client.close()


def kill_mid_lookup(engine: EngineProcess, standin: GmoStandIn, placed_before: int) -> int:
    """Once the stand-in has made the order and the engine is looking for it (its answer was
    dropped), SIGKILL: the store holds the order without an exchange id. Returns how many
    injected fault hits were left unused (cleared for the restart)."""

    def looking() -> bool:
        paths = [path for _, path, _, _ in list(standin.requests)]
        last_order = max((i for i, p in enumerate(paths) if p == ORDER), default=-1)
        return standin.placements() > placed_before and "/v1/activeOrders" in paths[last_order:]

    wait_until(looking, STEP_TIMEOUT, "the engine looking for its lost placement")
    engine.sigkill()
    unused = sum(fault.times for fault in standin._faults)
    standin.clear_faults()
    return unused


def outcome_of(row: dict[str, Any] | None) -> str | None:
    """A step's order as the scenarios state it: FILLED, its reject code, or None."""
    if row is None:
        return None
    return row["reject_code"] if row["status"] == "REJECTED" else row["status"]


def check_outcome(
    scenario: str,
    steps: list[Step],
    signals: list[Signal],
    standin: GmoStandIn,
    rig: Rig,
    injected: int,
    engine: EngineProcess,
    tmp_path: Path,
) -> str:
    """Assert (a)-(d); returns the scenario's figures."""
    orders = table(rig, "orders")
    with standin.exchange.lock:
        at_exchange = {
            str(o.order_id): (o.status, o.executed_size) for o in standin.exchange.orders.values()
        }
    placed = [row["order_id"] for row in orders if row["order_id"] != str(row["engine_order_id"])]
    duplicates = len(placed) - len(set(placed))
    per_leg = [row["signal_key"] for row in orders]  # one leg per signal here
    figures = (
        f"{scenario}: signals sent {len(signals)}, exchange orders {len(at_exchange)}, "
        f"engine orders {len(orders)} ({len(placed)} placed), duplicates {duplicates}, "
        f"faults injected {injected}"
    )
    context = f"{figures}\n{engine.log_tail(6000)}"

    # (a) no duplicate order, in either direction
    assert duplicates == 0, context
    assert len(per_leg) == len(set(per_leg)), context
    assert set(placed) == set(at_exchange), context
    # (b) each engine order as the exchange has it; none left waiting for an answer
    for row in orders:
        if row["order_id"] in at_exchange:
            status, executed = at_exchange[row["order_id"]]
            expected = {"EXECUTED": "FILLED", "CANCELED": "CANCELED", "EXPIRED": "CANCELED"}
            assert (row["status"], row["filled_size"]) == (
                expected.get(status, "NEW"),
                executed,
            ), f"{row}\n{context}"
        else:
            assert row["status"] == "REJECTED", f"{row}\n{context}"
    # (c) each step as expected; refusals with the exchange's (or the engine's) code
    by_signal = {row["signal_key"]: row for row in orders}
    outcomes = [outcome_of(by_signal.get(signal.signal_id)) for signal in signals]
    wanted = [step.expect for step in steps]
    wrong = [
        s.signal_id for s, got, want in zip(signals, outcomes, wanted, strict=True) if got != want
    ]
    assert outcomes == wanted, f"{context}\nwhat the engine said of {wrong}:\n" + (
        engine.lines_about(*wrong)
    )
    # every injected fault was met by a request (or the scenario did not test what it says)
    assert not standin._faults, f"faults never hit: {standin._faults}\n{context}"
    # (d) the live tables equal a rebuild from the log
    live = {name: table(rig, name) for name in ("orders", "executions", "positions")}
    rebuilt = run_cli("projections", "rebuild", "--database-url", rig.database_url, cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert {name: table(rig, name) for name in live} == live, context
    return figures
