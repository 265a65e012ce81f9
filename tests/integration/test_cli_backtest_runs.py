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
from typer.testing import CliRunner

from trading_engine.app.cli.commands import cli

SMA = ("--param", "fast_window=10", "--param", "slow_window=20")
EUR_RUN = ("--cash", "10000", "--commission", "0.002", *SMA)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")  # one line per message, whatever the terminal
    return CliRunner()


def invoke(runner: CliRunner, *args: str):
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    return result


def metrics_of(out: str) -> dict:
    return json.loads((Path(out) / "metrics.json").read_text())


def rows_of(path: str) -> list[dict[str, str]]:
    with Path(path).open() as fh:
        return list(csv.DictReader(fh))


def test_fills_are_not_capped_by_volume_unless_asked(runner: CliRunner) -> None:
    """EURUSD's `Volume` counts ticks (470 on the first signal's bar) while an all-in order is
    thousands of units: backtesting.py fills it whole, and so do we by default."""
    EURUSD.to_csv("EURUSD.csv")
    plain = invoke(runner, "backtest", "--data", "EURUSD.csv", *EUR_RUN, "--out", "plain")
    assert plain.exit_code == 0, plain.output
    assert metrics_of("plain")["trades"] == 262  # backtesting.py: 262
    assert metrics_of("plain")["final_equity"] == pytest.approx(3526.92, abs=0.01)
    capped = invoke(
        runner,
        "backtest",
        "--data",
        "EURUSD.csv",
        *EUR_RUN,
        "--volume-participation",
        "1",
        "--out",
        "capped",
    )
    assert capped.exit_code == 0, capped.output
    rows = rows_of("capped/trades.csv")
    # the first order (SELL 9,313) fills only the bar's 470 and the rest is canceled
    assert rows[0]["size"] == "470"
    assert metrics_of("capped")["trades"] < 262
    params = metrics_of("capped")["parameters"]
    assert params["volume_participation"] == "1"
    assert metrics_of("plain")["parameters"]["volume_participation"] is None


def test_a_file_without_volume_trades(runner: CliRunner) -> None:
    EURUSD.drop(columns="Volume").to_csv("eurusd_no_volume.csv")
    result = invoke(runner, "backtest", "--data", "eurusd_no_volume.csv", *EUR_RUN, "--out", "o")
    assert result.exit_code == 0, result.output
    assert metrics_of("o")["trades"] == 262
    capped = invoke(
        runner,
        "backtest",
        "--data",
        "eurusd_no_volume.csv",
        "--volume-participation",
        "0.5",
        "--out",
        "c",
    )
    assert capped.exit_code == 2
    assert "EURUSD_NO_VOLUME has no volume" in capped.output
    assert "nothing would fill" in capped.output


def test_one_run_per_out_folder_and_the_printed_commands_work(runner: CliRunner) -> None:
    args = ("backtest", "--synthetic", "600", "--seed", "3", "--cash", "1000000", *SMA)
    first = invoke(runner, *args, "--out", "run")
    assert first.exit_code == 0, first.output
    events = int(
        re.search(
            r"(\d+) events verified", invoke(runner, "verify-log", "--run", "run").output
        ).group(1)
    )
    again = invoke(runner, *args, "--out", "run")
    assert again.exit_code == 2
    assert "run already holds a run" in again.output
    assert "--overwrite" in again.output
    replaced = invoke(runner, *args, "--out", "run", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    # a fresh store: the same run's events once, not twice
    verified = invoke(runner, "verify-log", "--run", "run")
    assert verified.exit_code == 0, verified.output
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
            done = invoke(runner, *command)
            assert done.exit_code == 0, (command, done.output)
    orders = rows_of("run/orders.csv")
    assert orders
    assert all(row["exchange"].startswith("backtest_") for row in orders)
    audit = printed[1]
    audit[audit.index("ORDER_ID")] = orders[0]["order_id"]
    trail = invoke(runner, *audit, "--json")
    assert trail.exit_code == 0, trail.output
    assert orders[0]["order_id"] in trail.output
    assert len(rows_of("run/executions.csv")) > 0

    missing = invoke(runner, "verify-log", "--run", "nowhere")
    assert missing.exit_code == 2
    assert "not a backtest run folder" in missing.output


def test_a_week_is_not_annualised(runner: CliRunner) -> None:
    result = invoke(runner, "backtest", "--synthetic", "10000", "--cash", "1000000", "--out", "w")
    assert result.exit_code == 0, result.output
    metrics = metrics_of("w")
    assert metrics["annualised"] is False
    for name in ("return_ann_pct", "volatility_ann_pct", "cagr_pct", "sharpe_ratio"):
        assert metrics[name] is None
    assert "annualised figures n/a: the run spans 6.9 days, under 30" in result.output
    assert re.search(r"return_ann_pct\s*│\s*n/a", result.output)
    year = invoke(
        runner, "backtest", "--synthetic", "8760", "--timeframe", "1h", "--out", "y", *SMA
    )
    assert year.exit_code == 0, year.output
    figures = metrics_of("y")
    assert figures["annualised"] is True
    assert -100 < figures["return_ann_pct"] < 1000  # a year of a market, not 27 digits


def test_a_run_for_its_numbers_only_writes_no_report(runner: CliRunner) -> None:
    """`--no-report` (a sweep of one, a benchmark): the same numbers, no chart to render."""
    EURUSD.to_csv("EURUSD.csv")
    full = invoke(runner, "backtest", "--data", "EURUSD.csv", *EUR_RUN, "--out", "full")
    bare = invoke(
        runner, "backtest", "--data", "EURUSD.csv", *EUR_RUN, "--out", "bare", "--no-report"
    )
    assert full.exit_code == bare.exit_code == 0, bare.output
    assert (Path("full") / "report.html").exists()
    assert not (Path("bare") / "report.html").exists()
    assert "report:" not in bare.output
    numbers = [
        {k: v for k, v in metrics_of(run).items() if k != "parameters"} for run in ("bare", "full")
    ]
    assert numbers[0] == numbers[1]  # (each run is its own venue and store: parameters differ)
    assert rows_of("bare/trades.csv") == rows_of("full/trades.csv")
