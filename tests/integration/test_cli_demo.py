"""The main job, run as a user runs it: `trading-engine demo` (in this process, through the
CLI's own parser; the bad-configuration case also as the installed script in a process of its
own, for the exit status the shell sees)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import CliResult
from support.cli import run_cli as cli
from trading_engine.adapters.eventstore.postgres import postgres_event_store
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.domain.values import OrderStatus


def run_cli(*args: str, env: dict[str, str | None], cwd: Path, process: bool = False) -> CliResult:
    return cli(*args, env={**env, "COLUMNS": "200"}, cwd=cwd, process=process)


def order_statuses(store) -> list[str]:
    return sorted(
        store.get_order(r.aggregate_id).status.value
        for r in store.read_log(limit=10_000)
        if type(r.event).__name__ == "Submitted"
    )


def test_demo_on_the_embedded_default_runs_twice(tmp_path: Path) -> None:
    for _ in range(2):
        result = run_cli("demo", env={"DATABASE_URL": None}, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "REJECTED" in result.stdout
        assert "refused as expected" in result.stdout
    database = tmp_path / "data" / "trading-engine.sqlite3"
    store = sqlite_event_store(database)
    try:
        # two runs × four orders: one FILLED, two CANCELED (one late-filled), one REJECTED each
        assert order_statuses(store) == sorted(["FILLED", "CANCELED", "CANCELED", "REJECTED"] * 2)
        position = store.find_position("demo", "BTC_JPY")
        assert position is not None
        assert position.fill_count == 2 * 5
    finally:
        store.close()


@pytest.mark.postgres
def test_demo_on_postgres(tmp_path: Path, pg_url: str, pg_schema: str) -> None:
    url = f"{pg_url}?schema={pg_schema}"
    result = run_cli("demo", env={"DATABASE_URL": url}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    store = postgres_event_store(pg_url, schema=pg_schema)
    try:
        statuses = order_statuses(store)
        assert statuses == sorted(["FILLED", "CANCELED", "CANCELED", "REJECTED"])
        assert OrderStatus.FILLED.value in result.stdout
    finally:
        store.close()


@pytest.mark.parametrize("process", [False, True], ids=["in-process", "script"])
def test_bad_configuration_stops_with_the_variable_named(tmp_path: Path, process: bool) -> None:
    result = run_cli("demo", env={"MAX_POSITION_SIZE": "-3"}, cwd=tmp_path, process=process)
    assert result.returncode == 2
    assert "MAX_POSITION_SIZE" in result.stderr
    assert not (tmp_path / "data").exists()
