"""Benchmark (not a test): the cost of running a sweep on a Dask cluster instead of the local
process pool, with the same number of worker processes, in the same run.

`trading-engine sweep` as a user runs it (a whole process, start-up included) on a grid of
SMA points over one-minute bars from a CSV file:

* local: `--workers N` (a process pool forked by the command);
* cluster: `--scheduler tcp://127.0.0.1:PORT` against a scheduler and N single-threaded
  workers started here beforehand (a researcher's cluster is already up; its start-up is
  printed, not counted), on loopback: the bar file is sent to the workers as bytes.

Each is run `--repeats` times, alternating; the medians are compared. Prints backtests per
minute for each and the cluster's throughput as a ratio of the local pool's (1.00: no
overhead), and checks that both rank the same points with the same figures.

  .venv/bin/python bench/sweep_cluster.py                       # 24 points, 20,000 bars, 2 workers
  .venv/bin/python bench/sweep_cluster.py --bars 5000 --workers 2 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backtest_speed import random_walk  # (the same seeded walk)

BIN = Path(sys.executable).parent
ENGINE, DASK = BIN / "trading-engine", BIN / "dask"
GRID = ("fast_window=5,10,15,20,25,30", "slow_window=40,60,90,120")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sweep(data: Path, out: Path, *where: str) -> tuple[float, bytes]:
    argv = [str(ENGINE), "sweep", "--data", str(data), "--cash", str(10**9)]
    for axis in GRID:
        argv += ["--grid", axis]
    argv += [*where, "--out", str(out)]
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"sweep failed ({done.returncode}):\n{done.stderr.decode()[-4000:]}")
    return wall, (out / "sweep.csv").read_bytes()


def start_cluster(workers: int, folder: Path) -> tuple[str, list[subprocess.Popen], float]:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=(folder / "scheduler.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ]
    for n in range(workers):
        processes.append(
            subprocess.Popen(
                [str(DASK), "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard"],
                stdout=(folder / f"worker-{n}.log").open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=folder,
            )
        )
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(workers, timeout=60)
    return address, processes, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    points = len(GRID[0].split(",")) * len(GRID[1].split(","))
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        data = folder / "BTC_JPY.csv"
        random_walk(args.bars).to_csv(data)
        address, processes, startup = start_cluster(args.workers, folder)
        try:
            local, remote, tables = [], [], set()
            for repeat in range(args.repeats):
                wall, table = sweep(data, folder / f"local{repeat}", "--workers", str(args.workers))
                local.append(wall)
                tables.add(table)
                wall, table = sweep(data, folder / f"remote{repeat}", "--scheduler", address)
                remote.append(wall)
                tables.add(table)
        finally:
            for process in processes:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    print(
        f"{points}-point sweep on {args.bars:,} one-minute bars, {args.workers} worker "
        f"processes, whole `trading-engine sweep` processes, median of {args.repeats} "
        f"(cores here: {os.cpu_count()}, load: {os.getloadavg()[0]:.2f})"
    )
    print(f"cluster start-up (scheduler + {args.workers} workers, not counted): {startup:.1f} s")
    for label, walls in (("local pool", local), ("dask cluster", remote)):
        median = statistics.median(walls)
        runs = " ".join(f"{w:.2f}" for w in walls)
        print(f"{label:>12}: {median:6.2f} s  {points / median * 60:7.1f} backtests/min  ({runs})")
    ratio = statistics.median(local) / statistics.median(remote)
    print(f"cluster throughput / local pool throughput: {ratio:.2f}")
    print("rankings and figures agree" if len(tables) == 1 else "RANKINGS DIFFER")


if __name__ == "__main__":
    main()
