"""`trading-engine backtest` on other people's files, and what a run leaves behind: fills not
capped by volume unless asked, files without a volume column, one run per --out (unless
--overwrite), the printed commands that look into the run (`--run DIR`), and no annualised
figures for a run too short to annualise. In-process, through the CLI's own parser."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from backtesting.test import EURUSD

from support.cli import CliResult, run_cli

SMA = ("--param", "fast_window=10", "--param", "slow_window=20")
EUR_RUN = ("--cash", "10000", "--commission", "0.002", *SMA)


@pytest.fixture(autouse=True)
def _in_tmp_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The tests name their files relative to a directory of their own."""
    monkeypatch.chdir(tmp_path)


def invoke(*args: str) -> CliResult:
    # COLUMNS: one line per message, whatever the terminal
    return run_cli(*args, cwd=Path.cwd(), env={"DATABASE_URL": None, "COLUMNS": "200"})


def metrics_of(out: str) -> dict:
    return json.loads((Path(out) / "metrics.json").read_text())


def rows_of(path: str) -> list[dict[str, str]]:
    with Path(path).open() as fh:
        return list(csv.DictReader(fh))


def test_fills_are_not_capped_by_volume_unless_asked() -> None:
    """EURUSD's `Volume` counts ticks (470 on the first signal's bar) while an all-in order is
    thousands of units: backtesting.py fills it whole, and so do we by default."""
    EURUSD.to_csv("EURUSD.csv")
    plain = invoke("backtest", "--data", "EURUSD.csv", *EUR_RUN, "--out", "plain")
    assert plain.returncode == 0, plain.output
    assert metrics_of("plain")["trades"] == 262  # backtesting.py: 262
    assert metrics_of("plain")["final_equity"] == pytest.approx(3526.92, abs=0.01)
    capped = invoke(
        "backtest",
        "--data",
        "EURUSD.csv",
        *EUR_RUN,
        "--volume-participation",
        "1",
        "--out",
        "capped",
    )
    assert capped.returncode == 0, capped.output
    rows = rows_of("capped/trades.csv")
    # the first order (SELL 9,313) fills only the bar's 470 and the rest is canceled
    assert rows[0]["size"] == "470"
    assert metrics_of("capped")["trades"] < 262
    params = metrics_of("capped")["parameters"]
    assert params["volume_participation"] == "1"
    assert metrics_of("plain")["parameters"]["volume_participation"] is None


def test_a_file_without_volume_trades() -> None:
    EURUSD.drop(columns="Volume").to_csv("eurusd_no_volume.csv")
    result = invoke("backtest", "--data", "eurusd_no_volume.csv", *EUR_RUN, "--out", "o")
    assert result.returncode == 0, result.output
    assert metrics_of("o")["trades"] == 262
    capped = invoke(
        "backtest",
        "--data",
        "eurusd_no_volume.csv",
        "--volume-participation",
        "0.5",
        "--out",
        "c",
    )
    assert capped.returncode == 2
    assert "EURUSD_NO_VOLUME has no volume" in capped.output
    assert "nothing would fill" in capped.output


def test_one_run_per_out_folder_and_the_printed_commands_work() -> None:
    args = ("backtest", "--synthetic", "600", "--seed", "3", "--cash", "1000000", *SMA)
    first = invoke(*args, "--out", "run")
    assert first.returncode == 0, first.output
    events = int(
        re.search(r"(\d+) events verified", invoke("verify-log", "--run", "run").output).group(1)
    )
    again = invoke(*args, "--out", "run")
    assert again.returncode == 2
    assert "run already holds a run" in again.output
    assert "--overwrite" in again.output
    replaced = invoke(*args, "--out", "run", "--overwrite")
    assert replaced.returncode == 0, replaced.output
    # a fresh store: the same run's events once, not twice
    verified = invoke("verify-log", "--run", "run")
    assert verified.returncode == 0, verified.output
    assert f"{events} events verified" in verified.output

    # every command the run printed works as printed (the order id from the export)
    printed = [
        line.strip().removeprefix("trading-engine ").split()
        for line in replaced.output.splitlines()
        if line.strip().startswith("trading-engine ")
    ]
    assert [command[0] for command in printed] == ["verify-log", "audit", "export", "export"]
    for command in printed:
        if command[0] != "audit":
            done = invoke(*command)
            assert done.returncode == 0, (command, done.output)
    orders = rows_of("run/orders.csv")
    assert orders
    assert all(row["exchange"].startswith("backtest_") for row in orders)
    audit = printed[1]
    audit[audit.index("ORDER_ID")] = orders[0]["order_id"]
    trail = invoke(*audit, "--json")
    assert trail.returncode == 0, trail.output
    assert orders[0]["order_id"] in trail.output
    assert len(rows_of("run/executions.csv")) > 0

    missing = invoke("verify-log", "--run", "nowhere")
    assert missing.returncode == 2
    assert "not a backtest run folder" in missing.output


def test_a_week_is_not_annualised() -> None:
    result = invoke("backtest", "--synthetic", "10000", "--cash", "1000000", "--out", "w")
    assert result.returncode == 0, result.output
    metrics = metrics_of("w")
    assert metrics["annualised"] is False
    for name in ("return_ann_pct", "volatility_ann_pct", "cagr_pct", "sharpe_ratio"):
        assert metrics[name] is None
    assert "annualised figures n/a: the run spans 6.9 days, under 30" in result.output
    assert re.search(r"return_ann_pct\s*│\s*n/a", result.output)
    year = invoke("backtest", "--synthetic", "8760", "--timeframe", "1h", "--out", "y", *SMA)
    assert year.returncode == 0, year.output
    figures = metrics_of("y")
    assert figures["annualised"] is True
    assert -100 < figures["return_ann_pct"] < 1000  # a year of a market, not 27 digits


def test_a_run_for_its_numbers_only_writes_no_report() -> None:
    """`--no-report` (a sweep of one, a benchmark): the same numbers, no chart to render."""
    EURUSD.to_csv("EURUSD.csv")
    full = invoke("backtest", "--data", "EURUSD.csv", *EUR_RUN, "--out", "full")
    bare = invoke("backtest", "--data", "EURUSD.csv", *EUR_RUN, "--out", "bare", "--no-report")
    assert full.returncode == bare.returncode == 0, bare.output
    assert (Path("full") / "report.html").exists()
    assert not (Path("bare") / "report.html").exists()
    assert "report:" not in bare.output
    numbers = [
        {k: v for k, v in metrics_of(run).items() if k != "parameters"} for run in ("bare", "full")
    ]
    assert numbers[0] == numbers[1]  # (each run is its own venue and store: parameters differ)
    assert rows_of("bare/trades.csv") == rows_of("full/trades.csv")
