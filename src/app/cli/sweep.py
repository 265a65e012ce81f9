"""`trading-engine sweep`: one backtest per point of a parameter grid, ranked by a metric."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from trading_engine.app.cli.backtest import SHOWN, _number, parse_params
from trading_engine.app.cli.common import console, errors, fail, progress
from trading_engine.app.cli.options import (
    RUN_STORE,
    CashOption,
    CommissionOption,
    DataOption,
    FractionOption,
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
from trading_engine.files import write_atomically

# The engine's modules are imported by the command: `--help` loads none.


def parse_axes(specs: list[str]) -> dict[str, list[Any]]:
    """`--grid fast_window=5,10` → {"fast_window": [5, 10]}, each value parsed as `--param`."""
    axes: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, raw = spec.partition("=")
        name = name.strip()
        values = [value.strip() for value in raw.split(",")]
        if not sep or not name or not all(values):
            raise fail(f"--grid expects NAME=V1,V2,..., got {spec!r}")
        if name in axes:
            raise fail(f"--grid: {name} is given twice")
        axes[name] = [parse_params([f"{name}={value}"])[name] for value in values]
    return axes


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return str(value)


def _shown(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def sweep(
    grid_specs: Annotated[
        list[str] | None,
        typer.Option("--grid", help="Swept parameter NAME=V1,V2,...; repeat per parameter."),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Fixed strategy parameter NAME=VALUE.")
    ] = None,
    data: DataOption = None,
    synthetic: Annotated[
        int | None,
        typer.Option("--synthetic", help="Generate this many bars (--timeframe, default 1m)."),
    ] = None,
    timeframe: TimeframeOption = None,
    seed: SeedOption = 1,
    strategy: StrategyOption = "moving_average_cross",
    cash: CashOption = "10000",
    commission: CommissionOption = "0",
    slippage: SlippageOption = "0",
    shorting: ShortingOption = True,
    size: SizeOption = None,
    fraction: FractionOption = None,
    size_step: SizeStepOption = None,
    symbol: SymbolOption = None,
    volume_participation: VolumeParticipationOption = None,
    sort: Annotated[
        str, typer.Option("--sort", help="Metric to rank the points by.")
    ] = "sharpe_ratio",
    ascending: Annotated[
        bool, typer.Option("--ascending", help="Lowest first (e.g. for max_drawdown_pct).")
    ] = False,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Processes (default: the CPU count).")
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Rows of the ranking to print.")] = 10,
    out: Annotated[Path, typer.Option("--out", help="Folder for sweep.csv and sweep.json.")] = (
        Path("sweep-out")
    ),
    keep_runs: Annotated[
        bool,
        typer.Option(
            "--keep-runs", help="Keep each point's event log in OUT/runs/N/events.sqlite3."
        ),
    ] = False,
) -> None:
    """Backtest every combination of the --grid values (each point on its own engine, in
    parallel), rank them by --sort, print the best --top and write sweep.csv and sweep.json
    to --out. A point that fails (e.g. fast_window >= slow_window) is reported, not fatal."""
    import csv

    import orjson
    from rich.table import Table

    from trading_engine.app.bootstrap.backtests import (
        import_what_a_backtest_imports,
        read_bar_files,
    )
    from trading_engine.app.bootstrap.strategy import strategy_factory
    from trading_engine.app.bootstrap.sweep import (
        SweepJob,
        backtest_settings,
        grid,
        iter_rows,
        metric_names,
        rank,
        run_sweep,
    )
    from trading_engine.app.runtime.config import ConfigError

    if bool(data) == bool(synthetic):
        raise fail("give --data FILE (repeatable) or --synthetic N, one of the two")
    if size is not None and fraction is not None:
        raise fail("--size and --fraction exclude each other")
    names = metric_names()
    if sort not in names:
        raise fail(f"--sort: unknown metric {sort!r}; one of: {', '.join(names)}")
    count = (os.cpu_count() or 1) if workers is None else workers
    if count < 1:
        raise fail(f"--workers must be at least 1, got {count}")
    if top < 0:
        raise fail(f"--top must be at least 0, got {top}")
    for name, text in (("--cash", cash), ("--commission", commission), ("--slippage", slippage)):
        _number(name, text)
    for name, optional in (
        ("--size", size),
        ("--fraction", fraction),
        ("--size-step", size_step),
        ("--volume-participation", volume_participation),
    ):
        if optional is not None:
            _number(name, optional)
    axes = parse_axes(grid_specs or [])
    if not axes:
        raise fail("give at least one --grid NAME=V1,V2,...")
    fixed = parse_params(param or [])
    both = sorted(set(axes) & set(fixed))
    if both:
        raise fail(f"swept and fixed at once: {', '.join(both)}")
    try:
        strategy_factory(backtest_settings("memory://", strategy))  # unknown strategy → stop
        if data:
            # unreadable data stops here, not once per point
            read_bar_files(data, symbol, timeframe=timeframe, warn=warn)
    except (ConfigError, ValueError) as error:
        raise fail(str(error)) from None

    runs = out / "runs"
    if keep_runs and runs.is_dir() and any(runs.iterdir()):
        # a point's trades are read back from its whole log: never add a run to an old one
        raise fail(f"--keep-runs: {runs} already holds runs; remove it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    points = grid(axes)
    jobs = [
        SweepJob(
            number=number,
            point=point,
            strategy=strategy,
            data=tuple(str(path.resolve()) for path in data or []),
            symbols=tuple(symbol) if symbol else None,
            synthetic=(synthetic, seed, (symbol or ["BTC_JPY"])[0]) if synthetic else None,
            fixed=fixed,
            cash=cash,
            commission=commission,
            slippage=slippage,
            shorting=shorting,
            size=size,
            fraction=fraction,
            size_step=size_step,
            timeframe=timeframe,
            volume_participation=volume_participation,
            database_url=f"sqlite:///{out.resolve()}/runs/{{n}}/{RUN_STORE}" if keep_runs else None,
        )
        for number, point in enumerate(points, start=1)
    ]
    if count > 1:
        import_what_a_backtest_imports()  # once, before the pool forks its workers
    with progress("sweep") as bar:
        task = bar.add_task("points", total=len(jobs))
        results = run_sweep(jobs, count, lambda done, _all: bar.update(task, completed=done))
    numbered = [{"point": job.number, **result} for job, result in zip(jobs, results, strict=True)]
    sort = _rankable(sort, numbered)
    ranked = rank(numbered, sort, descending=not ascending)

    metrics = [sort, *(name for name in SHOWN if name != sort)]
    columns = ["point", *axes, *metrics, "error"]
    rows = [
        {"point": result["point"], **row}
        for result, row in zip(ranked, iter_rows(ranked, list(axes), metrics), strict=True)
    ]

    def write_csv(fh: IO[str]) -> None:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({name: _cell(row[name]) for name in columns})

    document = {
        "strategy": strategy,
        "sort": sort,
        "descending": not ascending,
        "axes": axes,
        "fixed": fixed,
        "cash": cash,
        "commission": commission,
        "slippage": slippage,
        "allow_short": shorting,
        "data": [str(path) for path in data or []],
        "synthetic": {"count": synthetic, "seed": seed} if synthetic else None,
        "results": ranked,
    }
    csv_path, json_path = out / "sweep.csv", out / "sweep.json"
    write_atomically(csv_path, write_csv)
    write_atomically(
        json_path,
        lambda fh: fh.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"),
        binary=True,
    )

    failed = sum(1 for result in ranked if "error" in result)
    table = Table(title=f"{strategy}: {len(ranked)} points by {sort}, top {min(top, len(rows))}")
    shown = [sort, "return_pct", "max_drawdown_pct", "trades", "final_equity"]
    shown = list(dict.fromkeys(shown))
    for name in ["#", "point", *axes, *shown]:
        table.add_column(name, justify="right")
    if failed:
        table.add_column("error", no_wrap=True, overflow="ellipsis", max_width=70)
    for place, row in enumerate(rows[:top], start=1):
        cells = [str(place), str(row["point"]), *(_shown(row[name]) for name in axes)]
        cells += [_shown(row[name]) for name in shown]
        if failed:
            cells.append(row["error"] or "")
        table.add_row(*cells)
    console.print(table)
    if failed:
        console.print(f"{failed} of {len(ranked)} points failed (see the error column)")
    if keep_runs:
        console.print(f"event logs: {out / 'runs'}/N/events.sqlite3 (N: the point column)")
    console.print(f"results: {csv_path}, {json_path}")


def _rankable(sort: str, results: list[dict]) -> str:
    """`sort`, unless it is an annualised figure that no point has because the data span
    less than a month: then the return (and the reason, said once)."""
    from trading_engine.app.backtest.results import ANNUALISE_MIN_DAYS, ANNUALISED

    ran = [result for result in results if "error" not in result]
    if sort not in ANNUALISED or not ran or any(result.get("annualised") for result in ran):
        return sort
    days = ran[0].get("duration_days") or 0.0
    errors.print(
        f"{sort} is n/a: the data span {days:.1f} days, under {ANNUALISE_MIN_DAYS} (annualised "
        "figures need a month); ranked by return_pct instead (--sort to choose)",
        highlight=False,
    )
    return "return_pct"
