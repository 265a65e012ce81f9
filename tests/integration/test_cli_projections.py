"""`trading-engine projections status|run|rebuild` and `migrate`, as an operator runs them, on
the embedded default (a SQLite file)."""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import CliResult
from support.cli import run_cli as cli
from support.projection_rig import trade
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store


def run_cli(tmp_path: Path, *args: str) -> CliResult:
    database = f"sqlite:///{tmp_path / 'engine.sqlite3'}"
    return cli(*args, cwd=tmp_path, env={"DATABASE_URL": database})


def status(tmp_path: Path) -> dict[str, dict]:
    result = run_cli(tmp_path, "projections", "status", "--json")
    assert result.returncode == 0, result.stderr
    return {row["projection"]: row for row in json.loads(result.stdout)}


def test_status_run_and_rebuild(tmp_path: Path) -> None:
    log = sqlite_event_store(tmp_path / "engine.sqlite3")
    trade(log, 12, seed=4)
    head = log.max_position()
    log.close()
    migrated = run_cli(tmp_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "0002_orders_executions_positions" in migrated.stdout
    assert "nothing" in run_cli(tmp_path, "migrate").stdout  # re-runnable

    before = status(tmp_path)
    assert before["orders"]["position"] == 0
    assert before["orders"]["lag"] == head

    ran = run_cli(tmp_path, "projections", "run", "--once")
    assert ran.returncode == 0, ran.stderr
    after = status(tmp_path)
    assert after["orders"]["position"] == after["positions"]["position"] == head
    assert after["orders"]["lag"] == 0
    assert after["orders"]["rows"]["orders"] == 12

    rebuilt = run_cli(tmp_path, "projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "orders: 12 rows" in rebuilt.stdout
    assert "rebuild orders" in rebuilt.stderr  # the progress bar
    assert status(tmp_path) == after

    unknown = run_cli(tmp_path, "projections", "rebuild", "ordres")
    assert unknown.returncode == 2
    assert "unknown projection 'ordres'" in unknown.stderr
