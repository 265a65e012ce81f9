"""`trading-engine export orders|executions|signals`: computed from the event log of a real
run (a backtest's SQLite store), in every format, never leaving half a file."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from support.cli import CliResult
from support.cli import run_cli as cli
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.app.reporting.export_files import write_export
from trading_engine.domain.order import Order
from trading_engine.domain.signal_decision import SignalDecision

# Its tests share a module-scoped fixture: one worker makes it once (ops/test.sh, xdist).
pytestmark = pytest.mark.xdist_group("cli_exports")


def run_cli(cwd: Path, *args: str, **env: str) -> CliResult:
    """In this process (support/cli.py), with no DATABASE_URL but what the test gives."""
    return cli(*args, cwd=cwd, env={"DATABASE_URL": None, **env})


def export_run(cwd: Path, *args: str, **env: str) -> CliResult:
    """`export ...` on the backtest's store: its venue (`backtest_<id>`) is simulated, so the
    exports cover it only when asked (`--include-simulated`)."""
    return run_cli(cwd, "export", *args, "--include-simulated", **env)


@pytest.fixture(scope="module")
def run_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    made = run_cli(
        folder,
        "backtest",
        "--synthetic",
        "3000",
        "--seed",
        "2",
        "--cash",
        "10000000",
        "--commission",
        "0.001",
        "--out",
        "bt",
    )
    assert made.returncode == 0, made.stderr
    return folder / "bt" / "events.sqlite3"


def log_counts(path: Path) -> Counter[str]:
    store = sqlite_event_store(path)
    try:
        counts: Counter[str] = Counter()
        for recorded in store.read_log(1, 1_000_000):
            event = recorded.event
            if isinstance(
                event,
                Order.Submitted
                | Order.Accepted
                | Order.Rejected
                | Order.Filled
                | Order.CancelRequested
                | Order.Canceled,
            ):
                counts["orders"] += 1
            if isinstance(event, Order.Filled):
                counts["executions"] += 1
            if isinstance(event, SignalDecision.Approved | SignalDecision.Refused):
                counts["signals"] += 1
        return counts
    finally:
        store.close()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_each_export_has_one_row_per_log_event_in_every_format(
    run_store: Path, tmp_path: Path
) -> None:
    expected = log_counts(run_store)
    assert expected["executions"] > 20
    database = f"sqlite:///{run_store}"
    for kind in ("orders", "executions", "signals"):
        rows = {}
        for fmt in ("csv", "jsonl", "parquet"):
            out = tmp_path / f"{kind}.{fmt}"
            result = export_run(
                tmp_path, kind, "--format", fmt, "--out", str(out), DATABASE_URL=database
            )
            assert result.returncode == 0, result.stderr
            manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
            assert manifest["rows"] == expected[kind]
            assert "chain_head" in manifest  # the chain head the export was read at
            if fmt == "csv":
                rows[fmt] = read_csv(out)
            elif fmt == "jsonl":
                rows[fmt] = [json.loads(line) for line in out.read_text().splitlines()]
            else:
                rows[fmt] = pq.read_table(out).to_pylist()
        assert rows["csv"] == rows["jsonl"] == rows["parquet"]
        assert len(rows["csv"]) == expected[kind]


def test_order_rows_chain_their_states_and_fills_add_up(run_store: Path, tmp_path: Path) -> None:
    database = f"sqlite:///{run_store}"
    export_run(tmp_path, "orders", "--out", "orders.csv", DATABASE_URL=database)
    export_run(tmp_path, "executions", "--out", "fills.csv", DATABASE_URL=database)
    by_order: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in read_csv(tmp_path / "orders.csv"):
        by_order[row["order_id"]].append(row)
    for rows in by_order.values():
        assert rows[0]["event"] == "Submitted"
        assert rows[0]["state_before"] == ""
        for before, after in pairwise(rows):
            assert after["state_before"] == before["state_after"]
        assert rows[0]["strategy"] == "moving_average_cross"
    filled: dict[str, Decimal] = defaultdict(Decimal)
    for fill in read_csv(tmp_path / "fills.csv"):
        filled[fill["order_id"]] += Decimal(fill["size"])
    for order_id, rows in by_order.items():
        assert Decimal(rows[-1]["filled_size"]) == filled.get(order_id, Decimal(0))


def test_a_time_range_keeps_only_its_rows(run_store: Path, tmp_path: Path) -> None:
    database = f"sqlite:///{run_store}"
    export_run(tmp_path, "executions", "--out", "all.csv", DATABASE_URL=database)
    every = read_csv(tmp_path / "all.csv")
    middle = every[len(every) // 2]["time"]
    export_run(
        tmp_path,
        "executions",
        "--from",
        middle,
        "--out",
        "late.csv",
        DATABASE_URL=database,
    )
    late = read_csv(tmp_path / "late.csv")
    assert late == [row for row in every if row["time"] >= middle]


def test_bad_arguments_fail_before_any_work(run_store: Path, tmp_path: Path) -> None:
    database = f"sqlite:///{run_store}"
    bad_date = export_run(
        tmp_path, "orders", "--from", "yesterday", "--out", "x.csv", DATABASE_URL=database
    )
    assert bad_date.returncode == 2
    assert "--from" in bad_date.stderr
    bad_format = export_run(
        tmp_path, "orders", "--format", "xlsx", "--out", "x.csv", DATABASE_URL=database
    )
    assert bad_format.returncode == 2
    assert not (tmp_path / "x.csv").exists()
    assert "Traceback" not in bad_date.stderr + bad_format.stderr


def test_an_interrupted_export_leaves_no_file(tmp_path: Path) -> None:
    def rows():
        for n in range(10):
            if n == 5:
                raise KeyboardInterrupt  # Ctrl-C midway
            yield {"a": str(n)}

    target = tmp_path / "out.csv"
    for fmt in ("csv", "jsonl", "parquet"):
        with pytest.raises(KeyboardInterrupt):
            write_export(rows(), ["a"], target, fmt, {})
        assert list(tmp_path.iterdir()) == []


def test_tax_check_reconciles_tax_executions_and_positions(run_store: Path, tmp_path: Path) -> None:
    import shutil as files
    import sqlite3

    store = tmp_path / "copy.sqlite3"
    files.copy(run_store, store)  # this test edits the projection: on its own copy
    database = f"sqlite:///{store}"
    args = (
        "export",
        "tax",
        "--include-simulated",
        "--year",
        "2026",
        "--method",
        "total-average",
        "--check",
        "--out",
        "tax.json",
    )
    agreed = run_cli(tmp_path, *args, DATABASE_URL=database)
    assert agreed.returncode == 0, agreed.stderr
    assert "they agree" in agreed.stderr
    head = json.loads((tmp_path / "tax.json").read_text())["chain_head"]
    assert head["position"] > 0  # the report says which state of the log it was read at
    assert len(head["hash"]) == 64
    # the projection drifts (someone edits the table): the check names it and fails
    conn = sqlite3.connect(store)
    try:
        conn.execute("UPDATE positions SET realized_pnl = '1.00000000'")
        conn.commit()
    finally:
        conn.close()
    drifted = run_cli(tmp_path, *args, DATABASE_URL=database)
    assert drifted.returncode == 1
    assert "positions projection" in drifted.stderr
    assert "mismatch" in drifted.stderr


def test_simulated_venues_are_left_out_unless_asked_for(run_store: Path, tmp_path: Path) -> None:
    database = f"sqlite:///{run_store}"
    for kind in ("orders", "executions", "signals"):
        out = tmp_path / f"{kind}.csv"
        plain = run_cli(tmp_path, "export", kind, "--out", str(out), DATABASE_URL=database)
        assert plain.returncode == 0, plain.stderr
        assert read_csv(out) == []
        manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
        assert manifest["exchanges"] == []
        assert manifest["simulated_included"] is False
        (venue,) = manifest["simulated_left_out"]
        assert venue.startswith("backtest_")
        assert "left out simulated venues" in plain.stderr
        named = run_cli(
            tmp_path, "export", kind, "--exchange", venue, "--out", str(out), DATABASE_URL=database
        )
        assert named.returncode == 0, named.stderr
        manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
        assert manifest["exchanges"] == [venue]
        assert manifest["rows"] == log_counts(run_store)[kind]
    tax = run_cli(
        tmp_path,
        "export",
        "tax",
        "--year",
        "2026",
        "--method",
        "moving-average",
        DATABASE_URL=database,
    )
    assert tax.returncode == 0, tax.stderr
    document = json.loads(tax.stdout)
    assert document["trades"] == 0
    assert document["exchanges"] == []
    assert document["simulated_left_out"][0].startswith("backtest_")
