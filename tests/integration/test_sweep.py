"""`trading-engine sweep`: a grid of backtests, each the same as a single `backtest` run of
its parameters, ranked by a metric; a point that cannot run is reported, not fatal."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from support.cli import CliResult
from support.cli import run_cli as cli
from trading_engine.app.bootstrap.sweep import (
    SweepJob,
    grid,
    metric_names,
    rank,
    run_point,
    run_sweep,
)

BARS = "3000"
CASH = "10000000"  # BTC_JPY-like synthetic prices: enough cash for whole 0.001 steps


def run_cli(cwd: Path, *args: str) -> CliResult:
    """In this process (support/cli.py), with no DATABASE_URL."""
    return cli(*args, cwd=cwd, env={"DATABASE_URL": None})


def _number(text: str) -> float | None:
    return None if text == "" else float(text)


def test_sweep_ranks_the_grid_and_each_point_is_a_plain_backtest(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path,
        "sweep",
        "--synthetic",
        BARS,
        "--timeframe",
        "1h",  # 125 days: long enough for annualised figures such as the Sharpe ratio
        "--cash",
        CASH,
        "--grid",
        "fast_window=5,10",
        "--grid",
        "slow_window=20,30",
        "--workers",
        "2",
        "--out",
        "out",
    )
    assert result.returncode == 0, result.stderr
    assert "4/4" in result.stderr  # the progress bar got to the end
    assert "is n/a" not in result.stderr
    with (tmp_path / "out" / "sweep.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    assert list(rows[0])[:4] == ["point", "fast_window", "slow_window", "sharpe_ratio"]
    points = {(int(row["fast_window"]), int(row["slow_window"])) for row in rows}
    assert points == {(5, 20), (5, 30), (10, 20), (10, 30)}
    assert all(row["error"] == "" for row in rows)
    assert all(int(row["trades"]) > 0 for row in rows)
    sharpes = [float(row["sharpe_ratio"]) for row in rows]
    assert sharpes == sorted(sharpes, reverse=True)
    document = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert [entry["point"] for entry in document["results"]] == [int(r["point"]) for r in rows]
    report = (tmp_path / "out" / "report.html").read_text()
    assert "sharpe_ratio over slow_window (columns) and fast_window (rows)" in report
    assert report.count('<td class="cell"') == 4  # one coloured cell per point
    # grid order numbers the points: fast_window varies slowest
    numbered = {
        int(row["point"]): (int(row["fast_window"]), int(row["slow_window"])) for row in rows
    }
    assert numbered == {1: (5, 20), 2: (5, 30), 3: (10, 20), 4: (10, 30)}

    # one point, run alone through `trading-engine backtest`: the very same metrics
    single = run_cli(
        tmp_path,
        "backtest",
        "--synthetic",
        BARS,
        "--timeframe",
        "1h",
        "--cash",
        CASH,
        "--param",
        "fast_window=10",
        "--param",
        "slow_window=30",
        "--out",
        "single",
    )
    assert single.returncode == 0, single.stderr
    metrics = json.loads((tmp_path / "single" / "metrics.json").read_text())
    row = next(r for r in rows if (r["fast_window"], r["slow_window"]) == ("10", "30"))
    entry = next(
        e for e in document["results"] if e["parameters"] == {"fast_window": 10, "slow_window": 30}
    )
    compared = [
        name for name in rows[0] if name not in ("point", "fast_window", "slow_window", "error")
    ]
    assert len(compared) >= 10
    for name in compared:
        assert _number(row[name]) == metrics[name], name
    for name in metric_names():
        assert entry[name] == metrics[name], name


def test_a_failing_point_is_reported_and_the_others_complete(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path,
        "sweep",
        "--synthetic",
        "600",
        "--cash",
        CASH,
        "--grid",
        "fast_window=5,30",
        "--param",
        "slow_window=20",
        "--sort",
        "return_pct",
        "--workers",
        "2",
        "--out",
        "out",
    )
    assert result.returncode == 1, result.stderr  # not every point ran
    assert "1 of 2 points failed" in result.stdout
    with (tmp_path / "out" / "sweep.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [row["fast_window"] for row in rows] == ["5", "30"]  # the failed point last
    assert rows[0]["error"] == ""
    assert rows[0]["return_pct"] != ""
    assert "fast_window 30" in rows[1]["error"]
    assert rows[1]["return_pct"] == ""


def test_an_unknown_sort_metric_stops_before_any_work(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path,
        "sweep",
        "--synthetic",
        BARS,
        "--grid",
        "fast_window=5,10",
        "--sort",
        "nonsense",
        "--out",
        "out",
    )
    assert result.returncode == 2
    assert "nonsense" in result.stderr
    assert "sharpe_ratio" in result.stderr  # the known names are listed
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()  # nothing was run or written
    bad_grid = run_cli(tmp_path, "sweep", "--synthetic", "100", "--grid", "fast_window")
    assert bad_grid.returncode == 2
    assert "NAME=V1,V2" in bad_grid.stderr


def test_jobs_run_in_process_or_on_any_map_with_the_same_results(tmp_path: Path) -> None:
    jobs = [
        SweepJob(
            number=n,
            point=point,
            strategy="moving_average_cross",
            synthetic=(400, 3, "BTC_JPY"),
            cash=CASH,
            database_url=f"sqlite:///{tmp_path}/runs/{{n}}/events.sqlite3",
        )
        for n, point in enumerate(grid({"fast_window": [3, 40], "slow_window": [10]}), start=1)
    ]
    seen: list[tuple[int, int]] = []
    in_process = run_sweep(jobs, workers=1, progress=lambda done, total: seen.append((done, total)))
    in_memory = [replace(job, database_url=None) for job in jobs]  # memory://, the default
    mapped = run_sweep(in_memory, workers=8, map_function=lambda fn, items: [fn(i) for i in items])
    pooled = run_sweep(in_memory, workers=2)
    assert seen[-1] == (2, 2)
    assert in_process[0]["parameters"] == {"fast_window": 3, "slow_window": 10}
    assert "error" not in in_process[0]
    assert in_process[0]["trades"] > 0
    assert "error" in in_process[1]
    assert mapped == in_process
    assert pooled == in_process
    assert (tmp_path / "runs" / "1" / "events.sqlite3").exists()  # --keep-runs' layout
    assert run_point(in_memory[0]) == in_process[0]


def test_grid_is_the_cartesian_product_in_a_stable_order() -> None:
    assert grid({"a": [1, 2], "b": ["x", "y", "z"]}) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 1, "b": "z"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
        {"a": 2, "b": "z"},
    ]
    assert grid({"a": [3]}) == [{"a": 3}]
    assert grid({"a": [1, 2], "b": []}) == []
    assert grid({}) == [{}]


@pytest.mark.parametrize("descending", [True, False])
def test_rank_puts_missing_values_then_failures_last(descending: bool) -> None:
    results = [
        {"parameters": {"p": 1}, "sharpe_ratio": 0.5},
        {"parameters": {"p": 2}, "error": "bad parameters"},
        {"parameters": {"p": 3}, "sharpe_ratio": None},
        {"parameters": {"p": 4}, "sharpe_ratio": 2.0},
        {"parameters": {"p": 5}, "sharpe_ratio": math.nan},
        {"parameters": {"p": 6}, "sharpe_ratio": -1.0},
        {"parameters": {"p": 7}, "sharpe_ratio": 0.5},
    ]
    order = [r["parameters"]["p"] for r in rank(results, "sharpe_ratio", descending=descending)]
    valued = [4, 1, 7, 6] if descending else [6, 1, 7, 4]  # ties keep their grid order
    assert order == [*valued, 3, 5, 2]
    assert [r["parameters"]["p"] for r in results] == [1, 2, 3, 4, 5, 6, 7]  # not sorted in place


def test_metric_names_are_what_a_backtest_reports() -> None:
    names = metric_names()
    for name in ("sharpe_ratio", "return_pct", "max_drawdown_pct", "trades", "final_equity"):
        assert name in names
    assert "start" not in names
    assert "nonsense" not in names


def test_a_sweep_too_short_for_annualised_figures_ranks_by_return(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path,
        "sweep",
        "--synthetic",
        "400",
        "--cash",
        CASH,
        "--grid",
        "fast_window=5,10",
        "--param",
        "slow_window=20",
        "--workers",
        "1",
        "--out",
        "out",
    )
    assert result.returncode == 0, result.stderr
    message = " ".join(result.stderr.split())
    assert "sharpe_ratio is n/a: the data span 0.3 days, under 30" in message
    assert "ranked by return_pct instead" in message
    with (tmp_path / "out" / "sweep.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:3] == ["point", "fast_window", "return_pct"]
    returns = [float(row["return_pct"]) for row in rows]
    assert returns == sorted(returns, reverse=True)
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["sort"] == "return_pct"


def test_a_pool_worker_killed_mid_sweep_leaves_its_points_to_a_new_pool() -> None:
    """SIGKILL one of the local pool's processes once two points are done: the pool breaks,
    the points it left unfinished run in a new one, and every point's result is the one this
    process computes alone, once."""
    import multiprocessing
    import os
    import signal

    jobs = [
        SweepJob(
            number=number,
            point=point,
            strategy="moving_average_cross",
            synthetic=(2000, 3, "BTC_JPY"),
            timeframe="1h",
            cash=CASH,
        )
        for number, point in enumerate(
            grid({"fast_window": [3, 5, 8, 10], "slow_window": [30, 60]}), start=1
        )
    ]
    killed: list[int] = []

    def kill_a_worker(done: int, total: int) -> None:
        children = multiprocessing.active_children()
        if done >= 2 and not killed and children:
            killed.append(children[0].pid)
            os.kill(children[0].pid, signal.SIGKILL)

    results = run_sweep(jobs, 2, kill_a_worker)
    assert killed
    assert all("error" not in result for result in results), results
    assert results == run_sweep(jobs, 1)  # (in this process: no pool at all)
