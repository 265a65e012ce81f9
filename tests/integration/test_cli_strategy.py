"""The Strategy module's commands as a user runs them: simulate, replay, migrate."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import redis

from support.cli import CliResult
from support.cli import run_cli as cli


def run_cli(*args: str, cwd: Path, **env: str) -> CliResult:
    """In this process (support/cli.py), with no DATABASE_URL but what the test gives."""
    return cli(*args, cwd=cwd, env={"DATABASE_URL": None, "COLUMNS": "200", **env})


def test_simulate_the_bundled_sample(tmp_path: Path) -> None:
    db = tmp_path / "sim.sqlite3"
    result = run_cli("simulate", "--database-url", f"sqlite:///{db}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "trades 20000" in result.stdout
    conn = sqlite3.connect(db)
    try:
        signals = conn.execute("SELECT count(*), count(DISTINCT signal_id) FROM signals").fetchone()
        bars = dict(conn.execute("SELECT timeframe, count(*) FROM ohlcv GROUP BY timeframe"))
    finally:
        conn.close()
    assert signals[0] == signals[1] > 0
    assert f"signal stream entries: {signals[0]}" in result.stdout
    assert set(bars) == {"1s", "1m", "5m"}
    assert 180 <= bars["1m"] <= 185  # the sample spans 3 h 02 m


def test_simulate_refuses_an_unknown_strategy(tmp_path: Path) -> None:
    result = run_cli("simulate", "--synthetic", "100", cwd=tmp_path, STRATEGY_NAME="magic")
    assert result.returncode == 2
    assert "unknown strategy 'magic'" in result.stderr
    assert "Traceback" not in result.stderr


def test_replay_publishes_into_the_prefixed_stream(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    prefix = redis_prefix
    client = redis.Redis.from_url(redis_url)
    try:
        result = run_cli(
            "replay",
            "--synthetic",
            "500",
            "--seed",
            "3",
            cwd=tmp_path,
            REDIS_URL=redis_url,
            STREAM_PREFIX=prefix,
        )
        assert result.returncode == 0, result.stderr
        assert client.xlen(f"{prefix}md:trade") == 500
        _, fields = client.xrange(f"{prefix}md:trade", count=1)[0]
        assert fields[b"exchange"] == b"gmo"
        assert b'"channel":"trades"' in fields[b"payload"]
        both = run_cli("replay", cwd=tmp_path, REDIS_URL=redis_url, STREAM_PREFIX=prefix)
        assert both.returncode == 2
    finally:
        client.close()


@pytest.mark.postgres
def test_migrate_is_rerunnable(tmp_path: Path, pg_url: str, pg_schema: str) -> None:
    url = f"{pg_url}?schema={pg_schema}"
    first = run_cli("migrate", "--database-url", url, cwd=tmp_path)
    second = run_cli("migrate", "--database-url", url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "0001_ohlcv_and_signals" in first.stdout
    assert "up to date" in second.stdout


def test_simulate_keeps_its_own_store_even_with_database_url_set(tmp_path: Path) -> None:
    live = tmp_path / "live.sqlite3"
    result = run_cli(
        "simulate", "--synthetic", "2000", cwd=tmp_path, DATABASE_URL=f"sqlite:///{live}"
    )
    assert result.returncode == 0, result.stderr
    assert not live.exists()  # the live store is not touched
    (own,) = (tmp_path / "data" / "simulations").glob("sim-*.sqlite3")
    assert "→ sqlite:///data/simulations/" in result.stdout
    conn = sqlite3.connect(own)
    try:
        assert conn.execute("SELECT count(*) FROM ohlcv").fetchone()[0] > 0
    finally:
        conn.close()


def test_replay_refuses_a_speed_slower_than_real_time(tmp_path: Path) -> None:
    result = run_cli("replay", "--synthetic", "10", "--speed", "0.5", cwd=tmp_path)
    assert result.returncode == 2
    assert "slower than real time" in result.stderr
