"""What `sweep` and `walk-forward` share: their options beyond a backtest's, the checks made
before any work, and the job every point starts from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from trading_engine.app.cli.backtest import _number, parse_params
from trading_engine.app.cli.common import fail

FixedParamOption = Annotated[
    list[str] | None, typer.Option("--param", help="Fixed strategy parameter NAME=VALUE.")
]
SyntheticOption = Annotated[
    int | None,
    typer.Option("--synthetic", help="Generate this many bars (--timeframe, default 1m)."),
]
WorkersOption = Annotated[
    int | None, typer.Option("--workers", help="Processes (default: the CPU count).")
]
SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Run the backtests on a Dask cluster: its scheduler's address (tcp://HOST:PORT); "
        "the bar files are sent to the workers. Default: a local process pool.",
    ),
]
ConnectTimeoutOption = Annotated[
    float, typer.Option("--connect-timeout", help="Seconds to reach the scheduler and a worker.")
]


def checked_template(
    *,
    data: list[Path] | None,
    synthetic: int | None,
    seed: int,
    strategy: str,
    param: list[str] | None,
    swept: list[str],
    sort: str,
    workers: int | None,
    scheduler: str | None,
    cash: str,
    commission: str,
    slippage: str,
    shorting: bool,
    size: str | None,
    fraction: str | None,
    size_step: str | None,
    symbol: list[str] | None,
    timeframe: str | None,
    volume_participation: str | None,
) -> tuple[Any, int, dict[str, Any]]:
    """The job every point starts from (its `number` and `point` to fill), the local worker
    count, and the fixed parameters; a usage error stops the command (exit 2) before any
    work. `swept`: the names the grid varies (none may also be fixed)."""
    from trading_engine.app.bootstrap.sweep import SweepJob, metric_names

    if bool(data) == bool(synthetic):
        raise fail("give --data FILE (repeatable) or --synthetic N, one of the two")
    if size is not None and fraction is not None:
        raise fail("--size and --fraction exclude each other")
    names = metric_names()
    if sort not in names:
        raise fail(f"--sort: unknown metric {sort!r}; one of: {', '.join(names)}")
    if scheduler is not None and workers is not None:
        raise fail("--workers and --scheduler exclude each other: the cluster has its workers")
    count = (os.cpu_count() or 1) if workers is None else workers
    if count < 1:
        raise fail(f"--workers must be at least 1, got {count}")
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
    if not swept:
        raise fail("give at least one --grid NAME=V1,V2,... or NAME=LOW:HIGH")
    fixed = parse_params(param or [])
    both = sorted(set(swept) & set(fixed))
    if both:
        raise fail(f"swept and fixed at once: {', '.join(both)}")
    template = SweepJob(
        number=0,
        point={},
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
    )
    return template, count, fixed
