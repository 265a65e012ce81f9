"""`trading-engine sweep --search optuna`, on backtesting.py's own GOOG daily bars: seeded
and reproducible, hopeless trials pruned, the study kept in a database so that a search
killed mid-way resumes, and several processes search one PostgreSQL study together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import backtesting.test
import optuna
import pytest

from support.cli import COMMAND, child_env, run_cli

GOOG = Path(backtesting.test.__file__).with_name("GOOG.csv")
SEARCH = (
    "sweep",
    "--data",
    str(GOOG),
    "--grid",
    "fast_window=2:20",
    "--grid",
    "slow_window=25:120:5",
    "--sort",
    "return_pct",
    "--search",
    "optuna",
)


def _results(folder: Path) -> list[dict]:
    return json.loads((folder / "sweep.json").read_text())["results"]


def _search(tmp_path: Path, out: str, *extra: str):
    return run_cli(*SEARCH, "--out", out, *extra, cwd=tmp_path, env={"DATABASE_URL": None})


def test_a_seeded_search_is_reproducible_and_prunes_hopeless_trials(tmp_path: Path) -> None:
    first = _search(tmp_path, "a", "--trials", "12", "--workers", "1", "--seed", "7")
    again = _search(tmp_path, "b", "--trials", "12", "--workers", "1", "--seed", "7")
    other = _search(tmp_path, "c", "--trials", "3", "--workers", "1", "--seed", "8")
    for result in (first, again, other):
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    a, b = _results(tmp_path / "a"), _results(tmp_path / "b")
    assert len(a) == 12
    assert a == b  # the same trials, values and ranking
    drawn = {tuple(r["parameters"].items()) for r in a}
    assert not {tuple(r["parameters"].items()) for r in _results(tmp_path / "c")} <= drawn
    states = [row["state"] for row in a]
    assert states.count("PRUNED") >= 2, states
    pruned = [row for row in a if row["state"] == "PRUNED"]
    assert all(int(row["pruned_at"].split("/")[0]) < 10 for row in pruned)
    complete = [row for row in a if row["state"] == "COMPLETE"]
    assert complete[0]["return_pct"] == max(row["return_pct"] for row in complete)
    # the best trial is an ordinary backtest of its parameters
    best = complete[0]["parameters"]
    single = run_cli(
        "backtest",
        "--data",
        str(GOOG),
        *(f"--param={name}={value}" for name, value in best.items()),
        "--out",
        "single",
        cwd=tmp_path,
        env={"DATABASE_URL": None},
    )
    assert single.returncode == 0, single.stderr
    metrics = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert metrics["return_pct"] == complete[0]["return_pct"]
    assert metrics["sharpe_ratio"] == complete[0]["sharpe_ratio"]
    csv_header = (tmp_path / "a" / "sweep.csv").read_text().splitlines()[0]
    assert csv_header.startswith("point,fast_window,slow_window,state,return_pct")


def test_a_search_killed_mid_way_resumes_its_study(tmp_path: Path) -> None:
    argv = [COMMAND, *SEARCH, "--trials", "14", "--workers", "1", "--no-prune", "--out", "out"]
    process = subprocess.Popen(
        argv,
        cwd=tmp_path,
        env=child_env({"DATABASE_URL": None}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    study = tmp_path / "out" / "study.sqlite3"
    deadline = time.monotonic() + 120
    try:
        while _finished(study) < 4 or not _count(study, "RUNNING"):
            assert process.poll() is None, "the search ended before it was killed"
            assert time.monotonic() < deadline, "no 4 trials in 120 s"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    done_before = _finished(study)
    assert done_before < 14
    cut_short = _count(study, "RUNNING")  # 1, unless that trial ended just before the kill
    time.sleep(6)  # the killed trial's heartbeat is older than its grace period (5 s)
    resumed = run_cli(
        *argv[1:],
        cwd=tmp_path,
        env={"DATABASE_URL": None},
    )
    assert resumed.returncode == 1, resumed.stderr  # the cut trial did not run
    assert f"({done_before} finished), resuming" in resumed.stdout
    rows = _results(tmp_path / "out")
    states = [row["state"] for row in rows]
    assert "RUNNING" not in states, states
    # the trial the kill cut short: failed, and its parameters tried again
    cut = [r for r in rows if r["state"] == "FAIL" and "cut short" in r["error"]]
    assert len(cut) == cut_short, states
    for trial in cut:  # (no parameters: killed before it drew them, nothing to repeat)
        if len(trial["parameters"]) == 2:
            assert any(r["parameters"] == trial["parameters"] and r is not trial for r in rows)
    # 14 trials that ran to their end (or could not run), the cut one besides
    assert len(rows) - len(cut) == 14, states


def _finished(study: Path) -> int:
    return _count(study, "COMPLETE", "PRUNED", "FAIL")


def _count(study: Path, *states: str) -> int:
    """Trials of the study file in these states (0 before it exists)."""
    import sqlite3

    if not study.exists():
        return 0
    marks = ", ".join("?" for _ in states)
    try:
        with sqlite3.connect(study, timeout=5) as db:
            query = f"SELECT COUNT(*) FROM trials WHERE state IN ({marks})"
            return db.execute(query, states).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.postgres
def test_two_processes_search_one_postgres_study(
    tmp_path: Path, pg_url: str, pg_schema: str
) -> None:
    storage = f"{pg_url}?schema={pg_schema}"
    argv = [
        COMMAND,
        *SEARCH,
        "--trials",
        "16",
        "--workers",
        "1",
        "--storage",
        storage,
        "--study",
        "shared",
    ]
    processes = [
        subprocess.Popen(
            [*argv, "--seed", str(seed), "--out", f"out{seed}"],
            cwd=tmp_path,
            env=child_env({"DATABASE_URL": None}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stdout + stderr
        assert "Traceback" not in stderr, stderr
    ran = [int(stdout.split(" run now")[0].rsplit("(", 1)[1]) for stdout, _ in outputs]
    assert all(count > 0 for count in ran), ran  # both searched
    from trading_engine.app.bootstrap.search import storage_for

    study = optuna.load_study(study_name="shared", storage=storage_for(storage))
    trials = study.get_trials()
    numbers = [trial.number for trial in trials]
    assert len(numbers) == len(set(numbers))
    states = [trial.state.name for trial in trials]
    # one study: 16 trials between them (one more when both finish at the same moment)
    assert 16 <= len(trials) <= 17, states
    assert set(states) <= {"COMPLETE", "PRUNED"}, states
    assert sum(ran) == len(trials)
    # each process's table shows the trials of both
    assert len(_results(tmp_path / "out1")) + len(_results(tmp_path / "out2")) > len(trials)


def test_search_options_are_checked_before_any_work(tmp_path: Path) -> None:
    cases = [
        (("--trials", "0"), "needs --trials N"),
        ((), "needs --trials N"),
        (("--trials", "5", "--keep-runs"), "--keep-runs is for a grid"),
        (("--trials", "5", "--storage", "mysql://x/y"), "is not sqlite:///FILE"),
    ]
    for extra, message in cases:
        result = _search(tmp_path, "out", *extra)
        assert result.returncode in (1, 2), (extra, result.stderr)
        assert message in result.stderr, (extra, result.stderr)
    grid_only = run_cli("sweep", "--synthetic", "100", "--grid", "rate=1e-4:1e-1:log", cwd=tmp_path)
    assert grid_only.returncode == 2
    assert "a log-scale range is for a search" in grid_only.stderr
    empty = run_cli("sweep", "--synthetic", "100", "--grid", "fast_window=50:5", cwd=tmp_path)
    assert empty.returncode == 2
    assert "empty range" in empty.stderr
    trials_in_grid = run_cli(
        "sweep", "--synthetic", "100", "--grid", "fast_window=5,10", "--trials", "5", cwd=tmp_path
    )
    assert trials_in_grid.returncode == 2
    assert "for --search optuna only" in trials_in_grid.stderr


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_trial_that_never_beat_is_failed_and_tried_again(tmp_path: Path) -> None:
    """A process killed between creating a trial and its first heartbeat leaves it RUNNING
    with no beat, which Optuna's stale check passes over: the next search fails it once it
    stayed silent for the grace period, and draws its parameters again."""
    from trading_engine.app.backtest.parameter_space import parse_axes
    from trading_engine.app.bootstrap.search import (
        SearchSpec,
        counted,
        open_study,
        search_worker,
        suggest,
    )
    from trading_engine.app.bootstrap.sweep import SweepJob

    axes = parse_axes(["fast_window=2:20", "slow_window=25:120:5"])
    spec = SearchSpec(
        axes=axes,
        template=SweepJob(number=0, point={}, strategy="moving_average_cross", data=(str(GOOG),)),
        metric="return_pct",
        maximise=True,
        trials=3,
        seed=1,
        storage=f"sqlite:///{tmp_path}/study.sqlite3",
        study="orphan",
    )
    study = open_study(spec)
    orphan = study.ask()  # RUNNING, and no heartbeat: ask() starts none
    drawn = {axis.name: suggest(orphan, axis) for axis in axes.values()}
    ran = search_worker(spec)
    trials = open_study(spec).get_trials()
    assert trials[0].state.name == "FAIL"
    assert [t.params for t in trials[1:] if t.params == drawn]  # tried again
    assert counted(open_study(spec)) == 3
    assert ran == 3
