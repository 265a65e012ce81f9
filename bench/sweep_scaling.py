"""Benchmark (not a test): `trading-engine sweep` as a user runs it — a 9-point grid (SMA
fast 5/10/15 × slow 20/30/40) on 10,000 one-minute bars from a CSV file — as a whole process
with 1 worker and with N workers (default: the CPU count), in the same run. Prints each
wall time, backtests per minute, the speed-up (1-worker wall / N-worker wall) and the
efficiency (speed-up / N), and checks that both sweeps rank the same points with the same
figures.

  .venv/bin/python bench/sweep_scaling.py                 # 9 points, 10,000 bars
  .venv/bin/python bench/sweep_scaling.py --bars 50000 --workers 2
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backtest_speed import random_walk  # (the same seeded walk)

ENGINE = Path(sys.executable).with_name("trading-engine")
GRID = ("fast_window=5,10,15", "slow_window=20,30,40")


def sweep(csv_path: Path, workers: int, out: Path) -> tuple[float, float, list[dict[str, str]]]:
    """Wall time, CPU time (the sweep and its workers), and sweep.csv's rows."""
    argv = [str(ENGINE), "sweep", "--data", str(csv_path), "--cash", str(10**9)]
    for axis in GRID:
        argv += ["--grid", axis]
    argv += ["--workers", str(workers), "--out", str(out)]
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"sweep failed:\n{process.stderr.read().decode()[-4000:]}")
    with (out / "sweep.csv").open() as fh:
        return wall, usage.ru_utime + usage.ru_stime, list(csv.DictReader(fh))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "BTC_JPY.csv"
        random_walk(args.bars).to_csv(data)
        one_wall, one_cpu, one_rows = sweep(data, 1, Path(folder) / "one")
        many_wall, many_cpu, many_rows = sweep(data, args.workers, Path(folder) / "many")
    points = len(one_rows)
    print(f"{points}-point sweep on {args.bars:,} one-minute bars, whole processes")
    for label, wall, cpu in (
        ("1 worker", one_wall, one_cpu),
        (f"{args.workers} workers", many_wall, many_cpu),
    ):
        print(
            f"{label:>10}: wall {wall:6.2f} s  cpu {cpu:6.2f} s  "
            f"{points / wall * 60:6.1f} backtests/min"
        )
    speedup = one_wall / many_wall
    print(
        f"speed-up with {args.workers} workers: {speedup:.2f} "
        f"(efficiency {speedup / args.workers:.2f}; cores here: {os.cpu_count()}; "
        f"load before: {os.getloadavg()[0]:.2f}); CPU spent with {args.workers} workers "
        f"/ with 1: {many_cpu / one_cpu:.2f}"
    )
    same = one_rows == many_rows
    print("rankings and figures agree" if same else "RANKINGS DIFFER between 1 and N workers")


if __name__ == "__main__":
    main()
