"""`trading-engine sweep --scheduler`: the same points on a real Dask cluster — a scheduler and
two workers started here as processes of their own on loopback, no shared folder passed to
them (the bar file is sent as bytes) — give the same ranking and metrics as the local pool,
to the last digit; a worker SIGKILLed mid-sweep leaves its points to the other one, each
counted once; an unreachable scheduler is said in a line, with exit code 1."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from support.cli import run_cli
from support.private_servers import free_port
from trading_engine.app.bootstrap.backtests import synthetic_bar_set
from trading_engine.app.bootstrap.cluster import DaskCluster
from trading_engine.app.bootstrap.sweep import SweepJob, grid, run_sweep

pytestmark = pytest.mark.xdist_group("dask_cluster")

DASK = str(Path(sys.executable).with_name("dask"))
CASH = "10000000"


@dataclass
class LocalCluster:
    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]

    def worker_pids(self) -> dict[str, int]:
        from distributed import Client

        with Client(self.address, timeout=10) as client:
            return client.run(os.getpid)

    def add_worker(self, logs: Path) -> subprocess.Popen:
        worker = _start(
            [DASK, "worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard"],
            logs / f"worker-{len(self.workers) + 1}.log",
        )
        self.workers.append(worker)
        return worker


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    # a folder of their own: the workers see nothing of the test's files
    cwd = log.parent / (log.stem + "-cwd")
    cwd.mkdir(exist_ok=True)
    return subprocess.Popen(
        argv, cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _wait_for_workers(address: str, count: int, timeout: float = 60) -> None:
    from distributed import Client

    with Client(address, timeout=timeout) as client:
        client.wait_for_workers(count, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    logs = tmp_path_factory.mktemp("dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _start(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        logs / "scheduler.log",
    )
    running = LocalCluster(address, scheduler, [])
    try:
        for _ in range(2):
            running.add_worker(logs)
        _wait_for_workers(address, 2)
        yield running
    finally:
        for process in [*running.workers, scheduler]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def bar_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Hourly bars as a CSV of our own format's columns, in a folder only this process knows."""
    bars = synthetic_bar_set(3000, 7, "BTC_JPY", "simulated", "1h")["BTC_JPY"]
    path = tmp_path_factory.mktemp("bars") / "BTC_JPY.csv"
    with path.open("w") as fh:
        fh.write("timestamp,open,high,low,close,volume\n")
        for bar in bars:
            fh.write(
                f"{bar.timestamp.isoformat()},{bar.open},{bar.high},{bar.low},{bar.close},"
                f"{bar.volume}\n"
            )
    return path


def _sweep(tmp_path: Path, bar_file: Path, out: str, *extra: str):
    return run_cli(
        "sweep",
        "--data",
        str(bar_file),
        "--cash",
        CASH,
        "--grid",
        "fast_window=5,10,20",
        "--grid",
        "slow_window=20,40,80",
        "--keep-runs",
        "--out",
        out,
        *extra,
        cwd=tmp_path,
        env={"DATABASE_URL": None},
    )


def _events(run: Path) -> int:
    with sqlite3.connect(run / "events.sqlite3") as db:
        return db.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0]


def test_the_cluster_ranks_and_measures_as_the_local_pool(
    cluster: LocalCluster, bar_file: Path, tmp_path: Path
) -> None:
    local = _sweep(tmp_path, bar_file, "local", "--workers", "2")
    remote = _sweep(tmp_path, bar_file, "remote", "--scheduler", cluster.address)
    # fast_window=20, slow_window=20 cannot run: reported, the other eight ranked, exit 1
    for result in (local, remote):
        assert result.returncode == 1, result.stderr
        assert "1 of 9 points failed" in result.stdout, result.stdout
    assert "2 worker threads" in remote.stdout
    ranked_here = json.loads((tmp_path / "local" / "sweep.json").read_text())["results"]
    ranked_there = json.loads((tmp_path / "remote" / "sweep.json").read_text())["results"]
    assert len(ranked_here) == 9
    assert ranked_there == ranked_here  # every metric, every digit, the same order
    assert (tmp_path / "remote" / "sweep.csv").read_text() == (
        tmp_path / "local" / "sweep.csv"
    ).read_text()
    # each point's event log came back from the worker, the same size as the local one
    for number in range(1, 10):
        here, there = tmp_path / "local" / "runs" / str(number), tmp_path / "remote" / "runs"
        assert _events(there / str(number)) == _events(here), number
    assert "fast_window 20" in ranked_there[-1]["error"]


def test_a_worker_killed_mid_sweep_leaves_its_points_to_the_other(
    cluster: LocalCluster, bar_file: Path, tmp_path: Path
) -> None:
    points = grid({"fast_window": [3, 5, 8, 10], "slow_window": [30, 60]})
    jobs = [
        SweepJob(
            number=number,
            point=point,
            strategy="moving_average_cross",
            data=(str(bar_file),),
            cash=CASH,
            database_url=f"sqlite:///{tmp_path}/runs/{{n}}/events.sqlite3",
        )
        for number, point in enumerate(points, start=1)
    ]
    from distributed import Client

    pids = cluster.worker_pids()
    assert len(pids) == 2, pids
    watcher = Client(cluster.address, timeout=10)
    killed: dict[str, list[str]] = {}

    def kill_one_busy_worker(done: int, total: int) -> None:
        if done < 2 or killed:
            return
        for address, keys in watcher.processing().items():
            if keys:
                killed[address] = list(keys)
                os.kill(pids[address], signal.SIGKILL)
                return

    try:
        with DaskCluster(cluster.address) as on_cluster:
            results = on_cluster.run(jobs, kill_one_busy_worker)
    finally:
        watcher.close()
        cluster.add_worker(tmp_path)  # the next test finds two workers again
        _wait_for_workers(cluster.address, 2)
    assert killed, "no worker was running a point when the sweep was half done"
    _address, in_flight = next(iter(killed.items()))
    assert in_flight  # points were running there when it died
    assert all("error" not in result for result in results), results
    # the same results as this process computes alone, one per point, in grid order
    expected = run_sweep([replace(job, database_url=None) for job in jobs], 2)
    assert results == expected
    assert len(list((tmp_path / "runs").iterdir())) == len(jobs)
    alone = replace(jobs[0], database_url=f"sqlite:///{tmp_path}/alone/{{n}}/events.sqlite3")
    run_sweep([alone], 1)
    # a point run twice (once on the dead worker) is in its log once
    assert _events(tmp_path / "runs" / "1") == _events(tmp_path / "alone" / "1")


def test_an_unreachable_scheduler_is_said_quickly(tmp_path: Path, bar_file: Path) -> None:
    started = time.monotonic()
    result = run_cli(
        "sweep",
        "--data",
        str(bar_file),
        "--grid",
        "fast_window=5,10",
        "--scheduler",
        f"tcp://127.0.0.1:{free_port()}",
        "--connect-timeout",
        "2",
        "--out",
        "out",
        cwd=tmp_path,
        env={"DATABASE_URL": None},
    )
    assert result.returncode == 1, result.stderr
    assert "not reachable within 2 s" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 30
    assert not (tmp_path / "out" / "sweep.json").exists()


def test_workers_and_scheduler_exclude_each_other(tmp_path: Path) -> None:
    result = run_cli(
        "sweep",
        "--synthetic",
        "100",
        "--grid",
        "fast_window=5",
        "--workers",
        "2",
        "--scheduler",
        "tcp://127.0.0.1:1",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "exclude each other" in result.stderr


@pytest.mark.postgres
def test_an_optuna_search_on_the_cluster_shares_one_postgres_study(
    cluster: LocalCluster, bar_file: Path, tmp_path: Path, pg_url: str, pg_schema: str
) -> None:
    storage = f"{pg_url}?schema={pg_schema}"
    common = ("--grid", "fast_window=3:20", "--grid", "slow_window=30:120:10", "--sort")
    result = run_cli(
        "sweep",
        "--data",
        str(bar_file),
        "--cash",
        CASH,
        *common,
        "return_pct",
        "--search",
        "optuna",
        "--trials",
        "10",
        "--scheduler",
        cluster.address,
        "--storage",
        storage,
        "--out",
        "out",
        cwd=tmp_path,
        env={"DATABASE_URL": None},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads((tmp_path / "out" / "sweep.json").read_text())["results"]
    said = result.stdout + result.stderr
    # 10 trials; one more when both workers start their last at the same moment (each sees
    # 9 finished or running), which Optuna's shared study cannot rule out
    assert 10 <= len(rows) <= 11, said
    assert {row["state"] for row in rows} <= {"COMPLETE", "PRUNED"}, said
    assert f"{len(rows)} trials ({len(rows)} run now" in result.stdout, said
    # a study on a file is out of the workers' reach: refused before any work
    refused = run_cli(
        "sweep",
        "--data",
        str(bar_file),
        *common,
        "return_pct",
        "--search",
        "optuna",
        "--trials",
        "4",
        "--scheduler",
        cluster.address,
        "--out",
        "file",
        cwd=tmp_path,
        env={"DATABASE_URL": None},
    )
    assert refused.returncode == 2, refused.stderr
    assert "--storage postgresql://" in refused.stderr


def test_walk_forward_on_the_cluster_is_the_local_one(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """backtesting.py's GOOG, 365-day training and test windows: every window's
    choice, every figure and the stitched curve the same as on the local pool."""
    import backtesting.test

    goog = Path(backtesting.test.__file__).with_name("GOOG.csv")
    common = (
        "walk-forward",
        "--data",
        str(goog),
        "--grid",
        "fast_window=5,10",
        "--grid",
        "slow_window=20,40",
        "--train",
        "365d",
        "--test",
        "365d",
        "--commission",
        "0.002",
    )
    local = run_cli(*common, "--workers", "2", "--out", "local", cwd=tmp_path)
    remote = run_cli(*common, "--scheduler", cluster.address, "--out", "remote", cwd=tmp_path)
    assert (local.returncode, remote.returncode) == (0, 0), local.stderr + remote.stderr
    here = json.loads((tmp_path / "local" / "walk_forward.json").read_text())
    there = json.loads((tmp_path / "remote" / "walk_forward.json").read_text())
    assert len(here["windows"]) >= 5
    assert there == here


def test_a_worker_running_other_code_is_refused() -> None:
    from trading_engine.app.bootstrap.cluster import _can_run_points, code_fingerprint

    assert _can_run_points(code_fingerprint()) == ""
    assert "other trading-engine code" in _can_run_points("0" * 16)
