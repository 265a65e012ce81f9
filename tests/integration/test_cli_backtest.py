"""`trading-engine backtest` as a user runs it: a bar file in, a report folder out, and a
finished run's event log open to the other commands (audit, projections)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import psycopg
from backtesting.test import GOOG

from support.cli import CliResult
from support.cli import run_cli as cli
from trading_engine.adapters.eventstore.postgres import postgres_event_store


def run_cli(cwd: Path, *args: str, **env: str) -> CliResult:
    """In this process (support/cli.py), with no DATABASE_URL but what the test gives."""
    return cli(*args, cwd=cwd, env={"DATABASE_URL": None, **env})


def test_backtest_writes_the_report_and_the_run_can_be_audited(tmp_path: Path) -> None:
    GOOG.to_csv(tmp_path / "GOOG.csv")
    result = run_cli(
        tmp_path,
        "backtest",
        "--data",
        "GOOG.csv",
        "--strategy",
        "moving_average_cross",
        "--param",
        "fast_window=10",
        "--param",
        "slow_window=20",
        "--cash",
        "10000",
        "--commission",
        "0.002",
        "--out",
        "out",
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert "report: out/report.html" in result.stdout
    assert "2148/2148" in result.stderr  # the progress bar got to the end
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trades"] == 93  # the same as backtesting.py (see test_backtest_parity)
    assert abs(metrics["final_equity"] - 56263.51934) < 0.01
    with (out / "trades.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:8] == [
        "entry_time",
        "exit_time",
        "side",
        "size",
        "entry_price",
        "exit_price",
        "pnl",
        "fees",
    ]
    closed = [row for row in rows if row["status"] == "closed"]
    still_open = [row for row in rows if row["status"] == "open"]
    assert len(closed) == 93
    # backtesting.py leaves one trade open at the end too: a row with no exit
    assert len(still_open) == 1
    assert still_open[0]["exit_time"] == still_open[0]["exit_price"] == ""
    assert metrics["open_trades"] == 1
    assert metrics["open_trades_counted"] is False
    assert "1 position(s) still open at the end" in result.stdout.replace("\n", " ")
    assert (out / "equity.csv").read_text().count("\n") == 2148 + 1
    html = (out / "report.html").read_text()
    assert "/* BEGIN bokeh.min.js */" in html  # BokehJS inlined, not fetched
    assert "docs_json" in html  # the charts' Bokeh document, drawn by it
    assert not re.search(r"""<(script|link)[^>]+(src|href)=["']?https?:""", html)
    assert 'id="metrics"' in html
    assert "Sharpe ratio" in html
    assert html.count("<td>closed</td>") == 93
    assert html.count("<td>open</td>") == 1  # the open trade: listed, not counted

    # the run's event log is a database like any other: audit an order of it, project it
    database = f"sqlite:///{out / 'events.sqlite3'}"
    first_entry = rows[0]
    assert first_entry["side"] == "SHORT"
    status = run_cli(tmp_path, "projections", "run", "--once", DATABASE_URL=database)
    assert status.returncode == 0, status.stderr
    import sqlite3

    conn = sqlite3.connect(out / "events.sqlite3")
    try:
        (order_id, count) = conn.execute(
            "SELECT engine_order_id, (SELECT count(*) FROM orders) FROM orders ORDER BY id LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    assert count >= 93
    audit = run_cli(tmp_path, "audit", "order", order_id, "--json", DATABASE_URL=database)
    assert audit.returncode == 0, audit.stderr
    trail = json.loads(audit.stdout)
    assert "moving_average_cross" in audit.stdout
    assert trail  # every transition of the run's first order


def test_bad_input_is_a_clear_error_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "BAD.csv").write_text("timestamp,open,high,low,close\n2024-01-01,1,2,0.5,x\n")
    result = run_cli(tmp_path, "backtest", "--data", "BAD.csv", "--out", "out")
    assert result.returncode == 2
    assert "BAD.csv" in result.stderr
    assert "Traceback" not in result.stderr
    neither = run_cli(tmp_path, "backtest", "--out", "out")
    assert neither.returncode == 2
    assert "--data" in neither.stderr
    bad_param = run_cli(tmp_path, "backtest", "--synthetic", "100", "--param", "oops")
    assert bad_param.returncode == 2
    assert "NAME=VALUE" in bad_param.stderr


def test_a_backtest_keeps_its_own_store_even_with_database_url_set(
    tmp_path: Path, pg_url: str, pg_schema: str
) -> None:
    """DATABASE_URL names the live (or paper) store, which the tax export reads: a backtest's
    simulated orders and fills go to its own store unless --database-url names one."""
    live = f"{pg_url}?schema={pg_schema}"
    args = ("backtest", "--synthetic", "300", "--seed", "4", "--cash", "1000000")
    own = run_cli(tmp_path, *args, "--out", "own", DATABASE_URL=live)
    assert own.returncode == 0, own.stderr
    assert (tmp_path / "own" / "events.sqlite3").is_file()
    unwrapped = own.stdout.replace("\n", "")  # (the terminal width may wrap the path)
    assert f"event log: sqlite:///{tmp_path / 'own' / 'events.sqlite3'}" in unwrapped
    assert "not to DATABASE_URL" in own.stderr
    with psycopg.connect(pg_url) as conn:  # nothing in the live store: not even its schema
        found = conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s",
            (pg_schema,),
        ).fetchone()
    assert found == (0,)
    named = run_cli(tmp_path, *args, "--out", "named", "--database-url", live)
    assert named.returncode == 0, named.stderr
    assert not (tmp_path / "named" / "events.sqlite3").exists()
    store = postgres_event_store(pg_url, schema=pg_schema)
    try:
        assert store.max_position() > 0
    finally:
        store.close()
