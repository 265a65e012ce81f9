"""`trading-engine backtest`: the live loops over past bars, with a report to read."""

from __future__ import annotations

import os
import shlex
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from trading_engine.app.cli.common import errors, fail, progress
from trading_engine.app.cli.options import (
    RUN_STORE,
    CashOption,
    CommissionOption,
    DataOption,
    FractionOption,
    ParamOption,
    SeedOption,
    ShortingOption,
    SizeOption,
    SizeStepOption,
    SlippageOption,
    StrategyOption,
    SymbolOption,
    TimeframeOption,
    VolumeParticipationOption,
    warn,
)

# The engine's modules are imported by the command: `--help` (and `sweep`) loads none.
console = Console()

SHOWN = (
    "return_pct",
    "return_ann_pct",
    "volatility_ann_pct",
    "sharpe_ratio",
    "sortino_ratio",
    "calmar_ratio",
    "max_drawdown_pct",
    "max_drawdown_duration_days",
    "exposure_time_pct",
    "trades",
    "win_rate_pct",
    "profit_factor",
    "expectancy_pct",
    "sqn",
    "fees_paid",
    "final_equity",
)


def _number(name: str, text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise fail(f"{name}: not a number: {text!r}") from None


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`--param fast_window=10` → {"fast_window": 10}: ints, floats, booleans, else text."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise fail(f"--param expects NAME=VALUE, got {pair!r}")
        value: Any = raw.strip()
        for kind in (int, float):
            try:
                value = kind(raw)
                break
            except ValueError:
                continue
        if raw.strip().lower() in ("true", "false"):
            value = raw.strip().lower() == "true"
        parsed[name.strip()] = value
    return parsed


def backtest(
    data: DataOption = None,
    trades: Annotated[
        list[Path] | None,
        typer.Option("--trades", help="GMO trades file (CSV, .gz ok); bars are built from it."),
    ] = None,
    timeframe: TimeframeOption = None,
    synthetic: Annotated[
        int | None,
        typer.Option("--synthetic", help="Generate this many bars (--timeframe, default 1m)."),
    ] = None,
    seed: SeedOption = 1,
    strategy: StrategyOption = "moving_average_cross",
    param: ParamOption = None,
    cash: CashOption = "10000",
    commission: CommissionOption = "0",
    slippage: SlippageOption = "0",
    fill_rule: Annotated[
        str, typer.Option("--fill-rule", help="When market orders fill: next_open.")
    ] = "next_open",
    shorting: ShortingOption = True,
    size: SizeOption = None,
    fraction: FractionOption = None,
    size_step: SizeStepOption = None,
    symbol: SymbolOption = None,
    volume_participation: VolumeParticipationOption = None,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the run: its event log and report.")
    ] = Path("backtest-out"),
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace the run already in --out (a fresh event log)."),
    ] = False,
    report: Annotated[
        bool,
        typer.Option(
            "--report/--no-report",
            help="Write report.html (the chart); --no-report for the numbers only.",
        ),
    ] = True,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="Event store of the run (default: OUT/events.sqlite3, its own, even when "
            "DATABASE_URL is set).",
        ),
    ] = None,
) -> None:
    """Run the strategy and execution loops over past bars on the simulated exchange, then
    write metrics.json, trades.csv, equity.csv and report.html to --out."""
    import orjson
    from rich.table import Table

    from trading_engine.app.backtest.report import write_outputs
    from trading_engine.app.backtest.results import ANNUALISE_MIN_DAYS, compute_metrics
    from trading_engine.app.bootstrap.backtests import (
        BacktestOptions,
        bar_backtest,
        new_backtest_venue,
        read_bar_files,
        read_trade_file,
        synthetic_bar_set,
        trade_backtest,
    )
    from trading_engine.app.runtime.config import ConfigError, load_settings
    from trading_engine.domain.errors import DomainError
    from trading_engine.domain.values import Timeframe

    if sum((bool(data), bool(trades), bool(synthetic))) != 1:
        raise fail("give one of --data FILE (bars), --trades FILE (GMO trades), --synthetic N")
    if fill_rule != "next_open":
        raise fail(f"--fill-rule: only next_open is supported, not {fill_rule!r}")
    if size is not None and fraction is not None:
        raise fail("--size and --fraction exclude each other")
    _claim(out, overwrite)
    # A run's simulated orders and fills stay in its own store: never in the one DATABASE_URL
    # names (live or paper trading, read by the tax export) unless --database-url asks.
    url = database_url or f"sqlite:///{(out / RUN_STORE).resolve()}"
    if database_url is None and os.environ.get("DATABASE_URL"):
        errors.print(
            f"backtest: its event log goes to {url}, not to DATABASE_URL "
            "(--database-url to name a store)",
            highlight=False,
        )
    try:
        settings = load_settings(
            DATABASE_URL=url,
            STRATEGY_NAME=strategy,
            MAX_POSITION_SIZE=Decimal(10) ** 11,
            MAX_DRAWDOWN_PCT=Decimal(100),
            MAX_CONSECUTIVE_LOSSES=10**6,
        )
        venue = new_backtest_venue()
        options = BacktestOptions(
            cash=_number("--cash", cash),
            commission=_number("--commission", commission),
            slippage=_number("--slippage", slippage),
            allow_short=shorting,
            fraction=None
            if size is not None
            else _number("--fraction", fraction or "0")
            if fraction
            else BacktestOptions().fraction,
            size=None if size is None else _number("--size", size),
            size_step=None if size_step is None else _number("--size-step", size_step),
            strategy_overrides=parse_params(param or []),
            volume_participation=None
            if volume_participation is None
            else _number("--volume-participation", volume_participation),
        )
        if trades:
            loaded = [t for path in trades for t in read_trade_file(path)]
            loaded.sort(key=lambda t: t.timestamp)
            runner, close = trade_backtest(
                settings, loaded, options, venue=venue, timeframe=Timeframe(timeframe or "1m")
            )
            total = len(loaded)
        else:
            bars = (
                read_bar_files(data or [], symbol, venue, timeframe, warn=warn)
                if data
                else synthetic_bar_set(
                    synthetic or 0, seed, (symbol or ["BTC_JPY"])[0], venue, timeframe or "1m"
                )
            )
            runner, close = bar_backtest(settings, bars, options)
            total = sum(len(series) for series in bars.values())
    except (ConfigError, ValueError, DomainError) as error:
        raise fail(str(error)) from None
    try:
        with progress("backtest") as bar:
            task = bar.add_task("bars", total=total)
            result = runner.run(lambda done, _all: bar.update(task, completed=done))
    finally:
        close()
    metrics = compute_metrics(result)
    files = write_outputs(result, metrics, out, report=report)
    table = Table(
        title=f"{strategy} {orjson.dumps(result.parameters['strategy_parameters']).decode()}"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in SHOWN:
        value = metrics.get(name)
        table.add_row(
            name,
            "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value),
        )
    console.print(table)
    if not metrics["annualised"]:
        console.print(
            f"annualised figures n/a: the run spans {metrics['duration_days']:.1f} days, under "
            f"{ANNUALISE_MIN_DAYS}",
            highlight=False,
        )
    if "out_of_money_at" in result.parameters:
        console.print(
            f"out of money at {result.parameters['out_of_money_at']}: equity reached zero, "
            "every position was closed at that bar's close and the run stopped (as "
            "backtesting.py)",
            highlight=False,
        )
    _say_open_trades(result.open_trades)
    console.print(f"event log: {url}", highlight=False)
    if report:
        console.print(f"report: {files['report.html']}", highlight=False)
    if database_url is None:
        _say_next_commands(out)


def _claim(out: Path, overwrite: bool) -> None:
    """Make `out` the folder of this run only: a run already there is refused, or with
    --overwrite removed first (its event log too: a fresh store, not a second run in it)."""
    from trading_engine.app.backtest.report import OUTPUT_NAMES

    held = [out / name for name in (RUN_STORE, *OUTPUT_NAMES) if (out / name).exists()]
    if held and not overwrite:
        raise fail(
            f"{out} already holds a run ({', '.join(p.name for p in held)}): choose another "
            "--out, or add --overwrite to replace it"
        )
    if out.exists() and not out.is_dir():
        raise fail(f"--out {out}: not a folder")
    for name in (RUN_STORE, f"{RUN_STORE}-wal", f"{RUN_STORE}-shm", *OUTPUT_NAMES):
        (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _say_open_trades(still_open: list) -> None:
    if still_open:
        console.print(
            f"{len(still_open)} position(s) still open at the end: in the final equity at the "
            "last close, not in the trade statistics (as backtesting.py); rows marked open in "
            "trades.csv",
            highlight=False,
        )


def _say_next_commands(out: Path) -> None:
    run = shlex.quote(str(out))
    console.print("look into the run:", highlight=False)
    for command in (
        f"trading-engine verify-log --run {run}",
        f"trading-engine audit order ORDER_ID --run {run}",
        f"trading-engine export orders --run {run} --include-simulated --out {run}/orders.csv",
        f"trading-engine export executions --run {run} --include-simulated "
        f"--out {run}/executions.csv",
    ):
        console.print(f"  {command}", highlight=False, soft_wrap=True)
