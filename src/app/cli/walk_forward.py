"""`trading-engine walk-forward`: re-optimise on each training window, trade the choice on
the window after it, stitch the unseen windows into one out-of-sample curve."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from trading_engine.app.cli.common import console, errors, fail, progress
from trading_engine.app.cli.options import (
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
from trading_engine.app.cli.research import (
    ConnectTimeoutOption,
    FixedParamOption,
    SchedulerOption,
    SyntheticOption,
    WorkersOption,
    checked_template,
)
from trading_engine.app.cli.sweep import _cell, _shown, connect_cluster, parse_axes
from trading_engine.files import write_atomically

# The engine's modules are imported by the command: `--help` loads none.

OUTPUT_NAMES = ("walk_forward.csv", "walk_forward.json", "report.html")


def walk_forward(
    grid_specs: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            help="Swept parameter NAME=V1,V2,... or NAME=LOW:HIGH[:STEP]; repeat per parameter.",
        ),
    ] = None,
    train: Annotated[
        str | None,
        typer.Option(
            "--train",
            help="Training window: 90d, 12h, 4w, 30m (minutes) or 3M (calendar months).",
        ),
    ] = None,
    test: Annotated[
        str | None,
        typer.Option("--test", help="Test window (the same units); windows step by it."),
    ] = None,
    anchored: Annotated[
        bool,
        typer.Option(
            "--anchored/--rolling",
            help="Anchored: every training window starts at the data's start and grows; "
            "rolling (default): it keeps its length and slides by --test.",
        ),
    ] = False,
    param: FixedParamOption = None,
    data: DataOption = None,
    synthetic: SyntheticOption = None,
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
        str, typer.Option("--sort", help="Metric that chooses each training window's point.")
    ] = "sharpe_ratio",
    ascending: Annotated[
        bool, typer.Option("--ascending", help="Lowest is best (e.g. for volatility).")
    ] = False,
    workers: WorkersOption = None,
    scheduler: SchedulerOption = None,
    connect_timeout: ConnectTimeoutOption = 10.0,
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Folder for walk_forward.csv, walk_forward.json and report.html."
        ),
    ] = Path("walk-forward-out"),
) -> None:
    """Walk-forward analysis: on each training window backtest every --grid point and
    choose the best by --sort; run that point on the test window after it (its strategy
    warmed up on the bars before); stitch the test windows (returns compounded) into one
    out-of-sample curve and compare it with the in-sample figures. Windows: rolling or
    --anchored; the last test window is dropped if the data end inside it.

    Warns when in-sample beats out-of-sample by a wide margin: the in-sample annual return
    (average of the chosen training runs') is positive and the out-of-sample one
    (compounded over the test windows) is at or below zero, or below 0.5 times it
    (walk-forward efficiency < 0.5). Exit code 0 when every point and window ran, 1 when
    some failed (results still written), 2 for a usage error."""
    import csv

    import orjson
    from rich.table import Table

    from trading_engine.app.backtest.research_report import walk_forward_report_html
    from trading_engine.app.backtest.results import ANNUALISE_MIN_DAYS, ANNUALISED
    from trading_engine.app.backtest.walk_forward import parse_span, plan_windows
    from trading_engine.app.bootstrap.backtests import import_what_a_backtest_imports
    from trading_engine.app.bootstrap.strategy import strategy_factory
    from trading_engine.app.bootstrap.sweep import backtest_settings, grid
    from trading_engine.app.bootstrap.walk_forward import data_span, warmup_bars
    from trading_engine.app.bootstrap.walk_forward import walk_forward as run_walk_forward
    from trading_engine.app.runtime.config import ConfigError

    # ---- usage, before any work
    if train is None or test is None:
        raise fail("give --train and --test, e.g. --train 90d --test 30d")
    spans: dict[str, Any] = {}
    for name, text in (("--train", train), ("--test", test)):
        try:
            spans[name] = parse_span(text)
        except ValueError as error:
            raise fail(f"{name}: {error}") from None
    axes = parse_axes(grid_specs or [])
    template, count, fixed = checked_template(
        data=data,
        synthetic=synthetic,
        seed=seed,
        strategy=strategy,
        param=param,
        swept=list(axes),
        sort=sort,
        workers=workers,
        scheduler=scheduler,
        cash=cash,
        commission=commission,
        slippage=slippage,
        shorting=shorting,
        size=size,
        fraction=fraction,
        size_step=size_step,
        symbol=symbol,
        timeframe=timeframe,
        volume_participation=volume_participation,
    )
    try:
        strategy_factory(backtest_settings("memory://", strategy))  # unknown strategy → stop
        span = data_span(template, warn=warn)  # unreadable data stop here
    except (ConfigError, ValueError) as error:
        raise fail(str(error)) from None
    train_span, test_span = spans["--train"], spans["--test"]
    try:
        windows = plan_windows(span.start, span.end, train_span, test_span, anchored)
    except ValueError as error:
        raise fail(str(error)) from None
    days = (span.end - span.start).total_seconds() / 86_400
    if not windows:
        raise fail(
            f"no test window fits: the data span {days:.1f} days ({span.start:%Y-%m-%d %H:%M} "
            f"to {span.end:%Y-%m-%d %H:%M}), and --train {train_span} plus --test {test_span} "
            "need more"
        )
    train_days = min(w.train_days for w in windows)
    if sort in ANNUALISED and train_days <= ANNUALISE_MIN_DAYS:
        raise fail(
            f"--sort {sort} is annualised, n/a on runs under {ANNUALISE_MIN_DAYS} days, and the "
            f"training windows span {train_days:g} days: choose a longer --train or "
            "--sort return_pct"
        )
    points = grid(axes)
    shortest = min(span.bars_in(w.train_start, w.train_end) for w in windows)
    needs, invalid = [], []
    for point in points:
        try:
            needs.append((warmup_bars(strategy, {**fixed, **point}), point))
        except ConfigError as error:  # it fails when it runs, reported with the others
            invalid.append(f"{_params(point)}: {error}")
    if not needs:
        raise fail(f"no point of the grid can run ({len(invalid)} invalid), e.g. {invalid[0]}")
    if needs:
        warm, point = max(needs, key=lambda need: need[0])
        if warm >= shortest:
            raise fail(
                f"--train {train_span}: the shortest training window holds {shortest} bars, "
                f"and {strategy} with {_params(point)} needs {warm} to warm up: choose a "
                "longer --train (or smaller windows in --grid)"
            )

    # ---- the runs
    out.mkdir(parents=True, exist_ok=True)
    cluster = connect_cluster(scheduler, connect_timeout)
    if count > 1 and cluster is None:
        import_what_a_backtest_imports()  # once, before the pools fork their workers
    with progress("{task.description}") as bar, _closing(cluster):
        training = bar.add_task("training points", total=len(windows) * len(points))
        testing = bar.add_task("test windows   ", total=len(windows))
        document = run_walk_forward(
            template,
            axes,
            windows,
            metric=sort,
            descending=not ascending,
            workers=count,
            training_progress=lambda done, _all: bar.update(training, completed=done),
            test_progress=lambda done, _all: bar.update(testing, completed=done),
            runner=cluster,
        )
        bar.update(testing, total=bar.tasks[testing].completed)  # windows without a test run
    last_end = windows[-1].test_end
    tail_days = (span.end - last_end).total_seconds() / 86_400
    document = {
        "strategy": strategy,
        "sort": sort,
        "descending": not ascending,
        "train": str(train_span),
        "test": str(test_span),
        "anchored": anchored,
        "axes": axes,
        "fixed": fixed,
        "cash": cash,
        "commission": commission,
        "slippage": slippage,
        "allow_short": shorting,
        "data": [str(path) for path in data or []],
        "synthetic": {"count": synthetic, "seed": seed} if synthetic else None,
        "data_start": span.start.isoformat(),
        "data_end": span.end.isoformat(),
        "untested": {"start": last_end.isoformat(), "end": span.end.isoformat(), "days": tail_days}
        if tail_days > 0
        else None,
        **document,
    }

    # ---- the files
    rows = document["windows"]
    columns = [
        "window",
        "train_start",
        "train_end",
        "test_start",
        "test_end",
        *axes,
        f"in_sample_{sort}",
        f"out_of_sample_{sort}",
        "in_sample_return_pct",
        "out_of_sample_return_pct",
        "trades",
        "failed_points",
        "error",
    ]

    def csv_row(row: dict[str, Any]) -> dict[str, str]:
        chosen = row["parameters"] or {}
        values = {name: row.get(name) for name in columns}
        values.update({name: chosen.get(name) for name in axes})
        values[f"in_sample_{sort}"] = row["in_sample_metric"]
        values[f"out_of_sample_{sort}"] = row["out_of_sample_metric"]
        return {name: _cell(values[name]) for name in columns}

    def write_csv(fh: IO[str]) -> None:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(csv_row(row))

    paths = {name: out / name for name in OUTPUT_NAMES}
    write_atomically(paths["walk_forward.csv"], write_csv)
    write_atomically(
        paths["walk_forward.json"],
        lambda fh: fh.write(
            orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"
        ),
        binary=True,
    )
    page = walk_forward_report_html(document)
    write_atomically(paths["report.html"], lambda fh: fh.write(page))

    # ---- what it says
    summary = document["summary"]
    mode = "anchored" if anchored else "rolling"
    table = Table(
        title=f"{strategy}: {len(rows)} {mode} windows, train {train_span}, test {test_span}, "
        f"chosen by {sort}"
    )
    for name in ["#", "train", "test", *axes, f"IS {sort}", f"OOS {sort}", "OOS return %"]:
        table.add_column(name, justify="right")
    table.add_column("trades", justify="right")
    if any(row["error"] for row in rows):
        table.add_column("error", no_wrap=True, overflow="ellipsis", max_width=60)
    for row in rows:
        chosen = row["parameters"] or {}
        cells = [
            str(row["window"]),
            f"{_day(row['train_start'])}→{_day(row['train_end'])}",
            f"{_day(row['test_start'])}→{_day(row['test_end'])}",
            *(_shown(chosen.get(name)) for name in axes),
            _shown(row["in_sample_metric"]),
            _shown(row["out_of_sample_metric"]),
            _shown(row["out_of_sample_return_pct"]),
            _shown(row["trades"]),
        ]
        if len(table.columns) > len(cells):
            cells.append(row["error"] or "")
        table.add_row(*cells)
    console.print(table)
    stitched = document["out_of_sample"]["metrics"]
    console.print(
        f"out of sample (stitched, {summary['windows_tested']} windows): return "
        f"{_shown(stitched.get('return_pct'))} %, {_shown(summary['out_of_sample_return_ann_pct'])}"
        f" %/year, {sort} {_shown(summary['out_of_sample_metric_stitched'])}, max drawdown "
        f"{_shown(stitched.get('max_drawdown_pct'))} %, {_shown(stitched.get('trades'))} trades",
        highlight=False,
    )
    console.print(
        f"in sample (chosen training runs): {_shown(summary['in_sample_return_ann_pct'])} "
        f"%/year, mean {sort} {_shown(summary['in_sample_metric_mean'])}; walk-forward "
        f"efficiency {_shown(summary['efficiency'])}",
        highlight=False,
    )
    if summary["warning"]:
        warn(summary["warning"])
    if document["untested"]:
        console.print(
            f"not tested: the last {tail_days:.1f} days (from {last_end:%Y-%m-%d %H:%M}), "
            "shorter than a test window",
            highlight=False,
        )
    console.print(f"results: {', '.join(str(p) for p in paths.values())}", highlight=False)
    failed, windows_failed = summary["failed_points"], summary["failed_windows"]
    if failed or windows_failed:
        errors.print(
            f"{failed} of {summary['points']} points failed; {windows_failed} of "
            f"{summary['windows']} windows not tested",
            highlight=False,
        )
        said: dict[str, str] = {}  # each distinct error once, with the first point it hit
        for row in rows:
            for result in row["training"]:
                if "error" in result:
                    said.setdefault(result["error"], _params(result["parameters"]))
            if row["error"]:
                said.setdefault(row["error"], f"window {row['window']}")
        for message, where in list(said.items())[:5]:
            errors.print(f"  {where}: {message}", highlight=False, soft_wrap=True)
        if len(said) > 5:
            errors.print(f"  ... and {len(said) - 5} other errors (walk_forward.json)")
        raise typer.Exit(1)


def _day(iso: str) -> str:
    return iso[:10] if iso.endswith("T00:00:00+00:00") else iso.replace("T", " ")[:16]


def _params(point: dict[str, Any]) -> str:
    return " ".join(f"{name}={value}" for name, value in point.items())


@contextmanager
def _closing(cluster: Any) -> Iterator[None]:
    try:
        yield
    finally:
        if cluster is not None:
            cluster.close()
