"""Projections on PostgreSQL under faults: the process killed mid-batch, notifications lost,
the LISTEN connection dropped."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from support.cli import COMMAND, run_cli
from support.projection_rig import Rig, postgres_rig, trade
from trading_engine.adapters.projections.postgres_watcher import PostgresLogWatcher
from trading_engine.app.projections.runner import follow_all, rebuild
from trading_engine.app.projections.tables import OrdersProjection, PositionsProjection

pytestmark = pytest.mark.postgres
TABLES = ("orders", "executions", "positions")


@pytest.fixture
def rig(pg_url: str, pg_schema: str):
    made = postgres_rig(pg_url, pg_schema)
    yield made
    made.close()


def until(condition, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_killing_the_projection_process_mid_batch_then_resuming_equals_a_rebuild(
    rig: Rig, tmp_path: Path
) -> None:
    trade(rig.log, 600, seed=11)
    head = rig.log.max_position()
    env = {
        **os.environ,
        "DATABASE_URL": rig.database_url,
        "PROJECTION_BATCH_SIZE": "40",
    }
    kills = 0
    for _ in range(3):  # killed three times at different points, resumed each time
        process = subprocess.Popen(
            [COMMAND, "projections", "run", "--once"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        start = rig.store.position("orders")
        assert until(lambda s=start: rig.store.position("orders") > s)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        if rig.store.position("orders") < head:
            kills += 1
    assert kills >= 2  # most kills landed before the end: mid-run, mostly mid-transaction
    finished = run_cli("projections", "run", "--once", env=env, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert rig.store.position("orders") == rig.store.position("positions") == head
    resumed = {table: rig.store.rows(table) for table in TABLES}
    rebuild(lambda: OrdersProjection(rig.log), rig.log, rig.store)
    rebuild(lambda: PositionsProjection(rig.log), rig.log, rig.store)
    assert {table: rig.store.rows(table) for table in TABLES} == resumed


def _follow_in_background(rig: Rig, watcher: PostgresLogWatcher, poll_interval: float):
    stop = threading.Event()
    runners = list(rig.wiring.runners)
    thread = threading.Thread(
        target=follow_all,
        args=(runners, stop.is_set, watcher),
        kwargs={"poll_interval": poll_interval},
        daemon=True,
    )
    thread.start()
    return stop, thread


def test_a_lost_notification_only_delays_the_projection(rig: Rig) -> None:
    # The library's own LISTEN/NOTIFY subscription waits on its wake-up event with no timeout
    # (eventsourcing 9.5 ListenNotifySubscription._loop_on_pull): a notification that never
    # arrives leaves it waiting until the next one. Here every notification is lost (the
    # watcher listens where nobody notifies); the poll fallback still brings every event.
    deaf = PostgresLogWatcher(rig.database_url, channel="te_nobody_notifies_here")
    stop, thread = _follow_in_background(rig, deaf, poll_interval=0.2)
    try:
        trade(rig.log, 20, seed=2)
        head = rig.log.max_position()
        assert until(lambda: rig.store.position("orders") == head, seconds=20)
        assert until(lambda: rig.store.position("positions") == head, seconds=20)
    finally:
        stop.set()
        thread.join(timeout=10)
        deaf.close()
    assert not thread.is_alive()


def test_the_watcher_wakes_on_notify_and_survives_its_connection_dropping(
    rig: Rig, pg_url: str
) -> None:
    # The library NOTIFYs on a channel named after the table, the same in every schema of the
    # database: the other tests' inserts (other workers') wake this watcher too. The timeout
    # with nothing written is seen on a channel nobody notifies, through the same code.
    quiet = PostgresLogWatcher(rig.database_url, channel=f"te_quiet_{uuid.uuid4().hex[:12]}")
    try:
        assert quiet.wait(0.05) is False  # nothing written: the timeout
    finally:
        quiet.close()
    watcher = PostgresLogWatcher(rig.database_url)
    try:
        watcher.wait(0.05)  # listening from here on (woken or not by another test's insert)
        trade(rig.log, 1, seed=1, run="a")
        assert watcher.wait(5.0) is True  # the insert's NOTIFY
        with psycopg.connect(pg_url, autocommit=True) as admin:  # the connection dies
            pid = watcher.backend_pid
            assert pid is not None
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        watcher.wait(0.2)  # notices, closes; nothing raised
        watcher.wait(0.2)  # reconnects and listens again
        # Until it has noticed and listens again, a NOTIFY may go to the dead session (lost:
        # the runner's poll covers that); so write again until one wakes it.
        runs = iter(range(1000))

        def written_and_woken() -> bool:
            trade(rig.log, 1, seed=1, run=f"b{next(runs)}")
            return watcher.wait(0.5)

        assert until(written_and_woken, seconds=20)
    finally:
        watcher.close()
