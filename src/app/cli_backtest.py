"""`trading-engine backtest`: the live loops over past bars, with a report to read."""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.backtest_report import write_outputs
from app.backtest_results import compute_metrics
from app.bootstrap import (
    BacktestOptions,
    bar_backtest,
    new_backtest_venue,
    read_bar_files,
    read_trade_file,
    synthetic_bar_set,
    trade_backtest,
)
from app.cli_options import (
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
)
from app.config import ConfigError, load_settings
from domain.errors import DomainError
from domain.values import Timeframe

console = Console()
errors = Console(stderr=True)

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


def _fail(message: str, code: int = 2) -> typer.Exit:
    errors.print(f"[red]{message}[/red]")
    return typer.Exit(code)


def _number(name: str, text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise _fail(f"{name}: not a number: {text!r}") from None


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`--param fast_window=10` → {"fast_window": 10}: ints, floats, booleans, else text."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise _fail(f"--param expects NAME=VALUE, got {pair!r}")
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
    timeframe: Annotated[
        str, typer.Option("--timeframe", help="Bars built from --trades: e.g. 1m, 5m.")
    ] = "1m",
    synthetic: Annotated[
        int | None, typer.Option("--synthetic", help="Generate this many 1-minute bars instead.")
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
    out: Annotated[Path, typer.Option("--out", help="Folder for the report.")] = Path(
        "backtest-out"
    ),
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
    if sum((bool(data), bool(trades), bool(synthetic))) != 1:
        raise _fail("give one of --data FILE (bars), --trades FILE (GMO trades), --synthetic N")
    if fill_rule != "next_open":
        raise _fail(f"--fill-rule: only next_open is supported, not {fill_rule!r}")
    if size is not None and fraction is not None:
        raise _fail("--size and --fraction exclude each other")
    out.mkdir(parents=True, exist_ok=True)
    # A run's simulated orders and fills stay in its own store: never in the one DATABASE_URL
    # names (live or paper trading, read by the tax export) unless --database-url asks.
    url = database_url or f"sqlite:///{out.resolve()}/events.sqlite3"
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
        )
        if trades:
            loaded = [t for path in trades for t in read_trade_file(path)]
            loaded.sort(key=lambda t: t.timestamp)
            runner, close = trade_backtest(
                settings, loaded, options, venue=venue, timeframe=Timeframe(timeframe)
            )
            total = len(loaded)
        else:
            bars = (
                read_bar_files(data or [], symbol, venue)
                if data
                else synthetic_bar_set(synthetic or 0, seed, (symbol or ["BTC_JPY"])[0], venue)
            )
            runner, close = bar_backtest(settings, bars, options)
            total = sum(len(series) for series in bars.values())
    except (ConfigError, ValueError, DomainError) as error:
        raise _fail(str(error)) from None
    try:
        with Progress(
            TextColumn("backtest"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=errors,
        ) as bar:
            task = bar.add_task("bars", total=total)
            result = runner.run(lambda done, _all: bar.update(task, completed=done))
    finally:
        close()
    metrics = compute_metrics(result)
    files = write_outputs(result, metrics, out)
    table = Table(
        title=f"{strategy} {orjson.dumps(result.parameters['strategy_parameters']).decode()}"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in SHOWN:
        value = metrics.get(name)
        table.add_row(
            name,
            "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value),
        )
    console.print(table)
    console.print(f"event log: {url}")
    console.print(f"report: {files['report.html']}")
