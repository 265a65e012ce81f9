"""`trading-engine sweep`: one backtest per point of a parameter grid (or per trial of an
Optuna search), on a local process pool or a Dask cluster, ranked by a metric.

Exit status: 0 when every point ran, 1 when some did not (each reported with its error, the
others ranked and written all the same), 2 for a usage error found before any point ran."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from trading_engine.app.cli.backtest import parse_params
from trading_engine.app.cli.common import console, fail, progress
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
from trading_engine.app.cli.research import (
    ConnectTimeoutOption,
    FixedParamOption,
    SchedulerOption,
    SyntheticOption,
    WorkersOption,
    checked_template,
)
from trading_engine.app.cli.sweep_output import _cell, _shown, rankable, write_results

# The engine's modules are imported by the command: `--help` loads none.


def read_axes(specs: list[str]) -> dict[str, Any]:
    """`--grid` specs as axes (app/backtest/parameter_space.py); listed values are read as
    `--param` reads them. A bad spec stops the command (exit 2)."""
    from trading_engine.app.backtest.parameter_space import BadAxis, parse_axes

    def value(name: str, text: str) -> Any:
        return parse_params([f"{name}={text}"])[name]

    try:
        return parse_axes(specs, value)
    except BadAxis as error:
        raise fail(str(error)) from None


__all__ = [
    "_cell",
    "_shown",
    "connect_cluster",
    "parse_axes",
    "read_axes",
    "sweep",
]  # (walk-forward's too)


def parse_axes(specs: list[str]) -> dict[str, list[Any]]:
    """`--grid` specs as the values a grid runs through (ranges walked by their step)."""
    from trading_engine.app.backtest.parameter_space import BadAxis

    try:
        return {name: axis.grid_values() for name, axis in read_axes(specs).items()}
    except BadAxis as error:
        raise fail(str(error)) from None


def _redacted(url: str) -> str:
    """A storage URL without its password, for the files a sweep writes."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def sweep(
    grid_specs: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            help="Swept parameter: NAME=V1,V2,... or a range NAME=LOW:HIGH[:STEP] (a grid "
            "walks it by STEP, every integer without one); NAME=LOW:HIGH:log draws on a log "
            "scale (--search optuna). Repeat per parameter.",
        ),
    ] = None,
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
        str, typer.Option("--sort", help="Metric to rank the points by (a search's objective).")
    ] = "sharpe_ratio",
    ascending: Annotated[
        bool, typer.Option("--ascending", help="Lowest first (e.g. for max_drawdown_pct).")
    ] = False,
    workers: WorkersOption = None,
    scheduler: SchedulerOption = None,
    connect_timeout: ConnectTimeoutOption = 10.0,
    search: Annotated[
        str,
        typer.Option("--search", help="grid: every combination; optuna: --trials of a search."),
    ] = "grid",
    trials: Annotated[
        int | None, typer.Option("--trials", help="Trials of the search (--search optuna).")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="The search's study: sqlite:///FILE or postgresql://...[?schema=S] (several "
            "machines search one study there). Default: OUT/study.sqlite3.",
        ),
    ] = None,
    study: Annotated[
        str | None,
        typer.Option(
            "--study",
            help="The study's name (default: one derived from what is searched, so the "
            "same command resumes its study).",
        ),
    ] = None,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune/--no-prune",
            help="Stop a trial whose return is below the earlier trials' median (Optuna).",
        ),
    ] = True,
    top: Annotated[int, typer.Option("--top", help="Rows of the ranking to print.")] = 10,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for sweep.csv, sweep.json and report.html.")
    ] = Path("sweep-out"),
    keep_runs: Annotated[
        bool,
        typer.Option(
            "--keep-runs", help="Keep each point's event log in OUT/runs/N/events.sqlite3."
        ),
    ] = False,
) -> None:
    """Backtest every combination of the --grid values, or --trials of an Optuna search over
    their ranges (each point on its own engine, in parallel here or on a Dask cluster), rank
    them by --sort, print the best --top and write sweep.csv, sweep.json and report.html to
    --out. A point that fails (e.g. fast_window >= slow_window) is reported with its error
    and the others still ranked; the exit code is 1 unless every point ran."""
    from trading_engine.app.bootstrap.backtests import (
        import_what_a_backtest_imports,
        read_bar_files,
    )
    from trading_engine.app.bootstrap.strategy import strategy_factory
    from trading_engine.app.bootstrap.sweep import (
        backtest_settings,
        grid,
        rank,
        run_sweep,
    )
    from trading_engine.app.runtime.config import ConfigError

    if search not in ("grid", "optuna"):
        raise fail(f"--search is grid or optuna, got {search!r}")
    optuna = search == "optuna"
    if not optuna:
        given = [name for name, v in (("--trials", trials), ("--storage", storage)) if v]
        given += ["--study"] if study else []
        if given:
            raise fail(f"{', '.join(given)}: for --search optuna only")
    elif trials is None or trials < 1:
        raise fail("--search optuna needs --trials N (at least 1)")
    if optuna and keep_runs:
        raise fail("--keep-runs is for a grid; run a search's best points with `backtest`")
    if top < 0:
        raise fail(f"--top must be at least 0, got {top}")
    axes = read_axes(grid_specs or [])
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
    points: list[dict[str, Any]] = []
    if not optuna:
        from trading_engine.app.backtest.parameter_space import BadAxis

        try:
            points = grid({name: axis.grid_values() for name, axis in axes.items()})
        except BadAxis as error:
            raise fail(str(error)) from None
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
    if keep_runs:
        template = replace(
            template, database_url=f"sqlite:///{out.resolve()}/runs/{{n}}/{RUN_STORE}"
        )
    cluster = connect_cluster(scheduler, connect_timeout)
    try:
        if optuna:
            assert trials is not None
            numbered, searched = _search(
                template,
                axes,
                sort,
                not ascending,
                trials,
                seed,
                storage,
                study,
                prune,
                count,
                out,
                cluster,
            )
        else:
            jobs = [
                replace(template, number=number, point=point)
                for number, point in enumerate(points, start=1)
            ]
            if count > 1 and cluster is None:
                import_what_a_backtest_imports()  # once, before the pool forks its workers
            with progress("sweep") as bar:
                task = bar.add_task("points", total=len(jobs))
                results = run_sweep(
                    jobs,
                    count,
                    lambda done, _all: bar.update(task, completed=done),
                    runner=cluster,
                )
            numbered = [
                {"point": job.number, **result} for job, result in zip(jobs, results, strict=True)
            ]
            searched = None
    finally:
        if cluster is not None:
            cluster.close()
    sort = rankable(sort, numbered)
    ranked = rank(numbered, sort, descending=not ascending)
    document = {
        "strategy": strategy,
        "sort": sort,
        "descending": not ascending,
        "axes": {
            name: axis.grid_values() if not optuna else _described(axis)
            for name, axis in axes.items()
        },
        "fixed": fixed,
        "cash": cash,
        "commission": commission,
        "slippage": slippage,
        "allow_short": shorting,
        "data": [str(path) for path in data or []],
        "synthetic": {"count": synthetic, "seed": seed} if synthetic else None,
        "scheduler": scheduler,
        "search": searched,
        "results": ranked,
    }
    title = f"{strategy} ({'optuna' if optuna else 'grid'})"
    csv_path, json_path, report = write_results(
        out, document, list(axes), top=top, title=title, states=optuna
    )
    failed = sum(1 for result in ranked if "error" in result)
    if keep_runs:
        console.print(f"event logs: {out / 'runs'}/N/events.sqlite3 (N: the point column)")
    console.print(f"results: {csv_path}, {json_path}, {report}")
    if failed:
        console.print(f"{failed} of {len(ranked)} points failed (see the error column)")
        raise typer.Exit(1)


def _described(axis: Any) -> Any:
    if axis.values is not None:
        return list(axis.values)
    return {"low": axis.low, "high": axis.high, "step": axis.step, "log": axis.log}


def connect_cluster(scheduler: str | None, timeout: float) -> Any:
    """The cluster --scheduler names, connected (None: the local pool)."""
    if scheduler is None:
        return None
    from trading_engine.app.bootstrap.cluster import ClusterUnavailable, DaskCluster

    if timeout <= 0:
        raise fail(f"--connect-timeout must be above 0, got {timeout}")
    cluster = DaskCluster(scheduler, connect_timeout=timeout)
    try:
        cluster.connect()
    except ClusterUnavailable as error:
        raise fail(str(error), code=1) from None
    console.print(f"cluster {scheduler}: {cluster.workers} worker threads")
    return cluster


def _search(
    template: Any,
    axes: dict[str, Any],
    sort: str,
    maximise: bool,
    trials: int,
    seed: int,
    storage: str | None,
    study: str | None,
    prune: bool,
    workers: int,
    out: Path,
    cluster: Any,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """An Optuna search; its trials as sweep results, and what describes the search."""
    from trading_engine.app.bootstrap.search import (
        SearchSpec,
        SearchUnavailable,
        results,
        run_search,
        storage_for,
        study_name,
    )

    url = storage or f"sqlite:///{out.resolve()}/study.sqlite3"
    if cluster is not None and not url.startswith(("postgresql://", "postgres://")):
        raise fail(
            "--scheduler with --search optuna: the study must be where every worker reaches "
            "it: give --storage postgresql://..."
        )
    spec = SearchSpec(
        axes=axes,
        template=template,
        metric=sort,
        maximise=maximise,
        trials=trials,
        seed=seed,
        storage=url,
        study=study or study_name(template, axes, sort, maximise),
        prune=prune,
    )
    if prune and not maximise:
        console.print("pruning is off: it compares returns, and --ascending ranks lowest first")
    try:
        opened = storage_for(url)
        before = results(spec, storage=opened)
        if before:
            finished = sum(1 for row in before if row["state"] != "RUNNING")
            console.print(
                f"study {spec.study}: {len(before)} trials already ({finished} finished), resuming"
            )
        with progress("search") as bar:
            task = bar.add_task("trials", total=trials)
            ran = run_search(
                spec,
                workers,
                lambda done, _all: bar.update(task, completed=done),
                cluster,
                storage=opened,
            )
        found = results(spec, storage=opened)
    except SearchUnavailable as error:
        raise fail(str(error), code=1) from None
    pruned = sum(1 for row in found if row["state"] == "PRUNED")
    running = sum(1 for row in found if row["state"] in ("RUNNING", "WAITING"))
    elsewhere = f", {running} not finished (running elsewhere?)" if running else ""
    console.print(
        f"study {spec.study} in {_redacted(url)}: {len(found)} trials "
        f"({ran} run now, {pruned} pruned{elsewhere})"
    )
    described = {
        "method": "optuna",
        "study": spec.study,
        "storage": _redacted(url),
        "trials": trials,
        "seed": seed,
        "pruning": spec.pruning,
    }
    return found, described
