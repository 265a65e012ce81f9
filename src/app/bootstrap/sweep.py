"""Parameter sweeps: one backtest per point of a grid of strategy parameters, ranked.

A sweep is a map of one pure function, :func:`run_point`, over a list of small jobs
(:class:`SweepJob`: plain, picklable data — where the bars are, which strategy, the point's
parameters, the run's cash and costs).  Each job builds its own engine (event store, tables,
simulated exchange, its own ``backtest_<id>`` venue), runs it and returns a dict of metrics:
nothing is shared between points.  So the same jobs run in this process, on a local process
pool (:func:`run_sweep`), or on any engine with a ``map`` (Ray, Dask, a batch queue) — only
the bar files must be readable where the job runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from trading_engine.app.backtest.bars import Checkpoint
from trading_engine.app.backtest.results import (
    BacktestResult,
    EquityPoint,
    compute_metrics,
    metric_value,
)
from trading_engine.app.backtest.walk_forward import DETAIL, run_detail
from trading_engine.app.bootstrap.backtests import (
    BacktestOptions,
    bar_backtest,
    new_backtest_venue,
    read_bar_files,
    synthetic_bar_set,
)
from trading_engine.app.bootstrap.databases import database
from trading_engine.app.runtime.config import Settings, load_settings
from trading_engine.domain.models import OHLCV

__all__ = [
    "SweepJob",
    "backtest_settings",
    "grid",
    "metric_names",
    "rank",
    "run_point",
    "run_sweep",
]

Progress = Callable[[int, int], None]  # (points done, points in all)
MapFunction = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]

NOT_METRICS = ("start", "end")  # text, not something to rank by
POOL_RETRIES = 2  # new pools a point may see after the one running it broke


def grid(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the axes' values: the first axis varies slowest, each axis's
    values in the order given.  No axes → one empty point (a single run)."""
    names = list(axes)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*axes.values())]


@dataclass(frozen=True)
class SweepJob:
    """One point of a sweep, as plain data (it crosses process and machine boundaries).

    ``data``: bar file paths (one per symbol), or ``synthetic``: (count, seed, symbol).
    ``database_url``: None → ``memory://`` (nothing kept); else the run's event store, where
    ``{n}`` stands for ``number`` (e.g. ``sqlite:////out/runs/{n}/events.sqlite3``).
    """

    number: int  # 1-based, in grid order
    point: dict[str, Any]  # the swept parameters of this point
    strategy: str
    data: tuple[str, ...] = ()
    symbols: tuple[str, ...] | None = None
    synthetic: tuple[int, int, str] | None = None
    fixed: dict[str, Any] = field(default_factory=dict)  # parameters common to every point
    cash: str = "10000"
    commission: str = "0"
    slippage: str = "0"
    shorting: bool = True
    size: str | None = None
    fraction: str | None = None
    size_step: str | None = None
    database_url: str | None = None
    timeframe: str | None = None  # of the bar files (None: inferred), or of the synthetic bars
    volume_participation: str | None = None  # None: fills not capped by volume
    # A window of the bars (ISO times, None: unbounded): [start, end), trading from
    # `trade_from` (the bars before it only warm the strategy up). Walk-forward runs.
    start: str | None = None
    end: str | None = None
    trade_from: str | None = None
    # the result also carries the run's equity curve and trades as plain data, under
    # "detail" (backtest/walk_forward.run_detail): a walk-forward's test windows
    detail: bool = False

    def run_database_url(self) -> str:
        if self.database_url is None:
            return "memory://"
        return self.database_url.replace("{n}", str(self.number))


def backtest_settings(database_url: str, strategy: str) -> Settings:
    """The settings of a backtest run: no risk limit stands between the strategy and its
    trades (the same as `trading-engine backtest`)."""
    return load_settings(
        DATABASE_URL=database_url,
        STRATEGY_NAME=strategy,
        MAX_POSITION_SIZE=Decimal(10) ** 11,
        MAX_DRAWDOWN_PCT=Decimal(100),
        MAX_CONSECUTIVE_LOSSES=10**6,
    )


def _options(job: SweepJob) -> BacktestOptions:
    default = BacktestOptions()
    return BacktestOptions(
        cash=Decimal(job.cash),
        commission=Decimal(job.commission),
        slippage=Decimal(job.slippage),
        allow_short=job.shorting,
        fraction=None
        if job.size is not None
        else Decimal(job.fraction)
        if job.fraction
        else default.fraction,
        size=None if job.size is None else Decimal(job.size),
        size_step=None if job.size_step is None else Decimal(job.size_step),
        strategy_overrides={**job.fixed, **job.point},
        volume_participation=None
        if job.volume_participation is None
        else Decimal(job.volume_participation),
        trade_from=None if job.trade_from is None else datetime.fromisoformat(job.trade_from),
    )


def _window(job: SweepJob, bars: dict[str, list[OHLCV]]) -> dict[str, list[OHLCV]]:
    """The job's window of the bars: [start, end)."""
    if job.start is None and job.end is None:
        return bars
    start = None if job.start is None else datetime.fromisoformat(job.start)
    end = None if job.end is None else datetime.fromisoformat(job.end)
    windowed = {
        symbol: [
            bar
            for bar in series
            if (start is None or bar.timestamp >= start) and (end is None or bar.timestamp < end)
        ]
        for symbol, series in bars.items()
    }
    empty = [symbol for symbol, series in windowed.items() if not series]
    if empty:
        raise ValueError(f"no bar of {', '.join(empty)} in [{job.start}, {job.end})")
    return windowed


def run_point(job: SweepJob, checkpoint: Checkpoint | None = None) -> dict[str, Any]:
    """Run one backtest; ``{"parameters": point, **metrics}``, or ``{"parameters": point,
    "error": message}`` when the point cannot run (bad parameters, unreadable data...).
    ``checkpoint``: told the equity as the run goes (see `BarBacktest.run`); what it raises
    stops the run and is raised here, not reported as the point's error."""
    try:
        url = job.run_database_url()
        path = database(url).path
        if isinstance(path, Path):  # a SQLite file of its own
            path.parent.mkdir(parents=True, exist_ok=True)
        settings = backtest_settings(url, job.strategy)
        venue = new_backtest_venue()
        if job.synthetic is not None:
            count, seed, symbol = job.synthetic
            bars = synthetic_bar_set(count, seed, symbol, venue, job.timeframe or "1m")
        else:
            symbols = list(job.symbols) if job.symbols else None
            bars = read_bar_files([Path(p) for p in job.data], symbols, venue, job.timeframe)
        runner, close = bar_backtest(settings, _window(job, bars), _options(job))
        try:
            result = runner.run(None, _stopping(checkpoint))
        finally:
            close()
        point = {"parameters": dict(job.point), **compute_metrics(result)}
        if job.detail:
            point[DETAIL] = run_detail(result)
        return point
    except StopRun as stop:
        raise stop.reason from None
    except Exception as error:  # a point's failure is its result; the sweep goes on
        message = str(error).strip() or type(error).__name__
        return {"parameters": dict(job.point), "error": message}


class StopRun(Exception):
    """What a checkpoint raised, carried past the point's own error handling."""

    def __init__(self, reason: BaseException) -> None:
        super().__init__(str(reason))
        self.reason = reason


def _stopping(checkpoint: Checkpoint | None) -> Checkpoint | None:
    if checkpoint is None:
        return None

    def check(done: int, total: int, equity: Decimal) -> None:
        try:
            checkpoint(done, total, equity)
        except Exception as reason:
            raise StopRun(reason) from None

    return check


class PointRunner(Protocol):
    """Somewhere else to run the points (a cluster: app/bootstrap/cluster.py)."""

    def run(self, jobs: Sequence[SweepJob], progress: Progress | None = None) -> list[dict]: ...


def run_sweep(
    jobs: Sequence[SweepJob],
    workers: int,
    progress: Progress | None = None,
    map_function: MapFunction | None = None,
    runner: PointRunner | None = None,
) -> list[dict[str, Any]]:
    """Every job's result, in the jobs' (grid) order.

    ``runner``: a cluster's, which runs them all; else ``map_function``: any ``map(fn,
    jobs)`` returning results in order (``Executor.map``...); by default a local process pool
    of ``workers`` processes, or this process when ``workers`` is 1.
    """
    if runner is not None:
        return runner.run(jobs, progress)
    total = len(jobs)
    results: list[dict[str, Any]] = []

    def tick(done: int) -> None:
        if progress is not None:
            progress(done, total)

    tick(0)
    if map_function is not None or workers <= 1 or total <= 1:
        for result in (map_function or map)(run_point, jobs):
            results.append(result)
            tick(len(results))
        return results
    ordered: dict[int, dict[str, Any]] = {}
    broke: dict[int, int] = {}  # point index -> pools that broke while it was unfinished
    waiting = list(range(total))
    while waiting:
        # A worker that dies (killed, out of memory) breaks the whole pool: the points it
        # left unfinished run again in a new one, up to POOL_RETRIES times each.
        with ProcessPoolExecutor(max_workers=min(workers, len(waiting))) as pool:
            futures = {pool.submit(run_point, jobs[index]): index for index in waiting}
            waiting = []
            for future in as_completed(futures):
                index = futures[future]
                try:
                    ordered[index] = future.result()
                except BrokenProcessPool as error:
                    broke[index] = broke.get(index, 0) + 1
                    if broke[index] <= POOL_RETRIES:
                        waiting.append(index)
                        continue
                    point = dict(jobs[index].point)
                    message = f"worker failed: {error} ({broke[index]} times)"
                    ordered[index] = {"parameters": point, "error": message}
                tick(len(ordered))
        waiting.sort()
    return [ordered[index] for index in range(total)]


def rank(
    results: Iterable[dict[str, Any]], metric: str, descending: bool = True
) -> list[dict[str, Any]]:
    """The results by ``metric`` (best first when ``descending``); points without a value of
    it (None, NaN) after them, then the points that failed — each group in its given order."""

    def key(indexed: tuple[int, dict[str, Any]]) -> tuple[int, float, int]:
        index, result = indexed
        value = metric_value(result, metric)
        if value is None:
            return (2 if "error" in result else 1, 0.0, index)
        return (0, -value if descending else value, index)

    return [result for _, result in sorted(enumerate(results), key=key)]


def metric_names() -> list[str]:
    """The names of the metrics a backtest reports that a sweep can be ranked by (what
    :func:`compute_metrics` returns, less the start and end times)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    sample = BacktestResult(
        initial_cash=Decimal(1),
        equity=[
            EquityPoint(start + timedelta(minutes=i), Decimal(1), exposed=False) for i in range(2)
        ],
        trades=[],
        fees_paid=Decimal(0),
        prices={},
        parameters={},
    )
    return [name for name in compute_metrics(sample) if name not in NOT_METRICS]


def iter_rows(
    results: Iterable[dict[str, Any]], axes: Sequence[str], metrics: Sequence[str]
) -> Iterator[dict[str, Any]]:
    """Flat rows for a table or a CSV: the swept parameters, the metrics, the error."""
    for result in results:
        parameters = result.get("parameters", {})
        row: dict[str, Any] = {name: parameters.get(name) for name in axes}
        row.update({name: result.get(name) for name in metrics})
        row["error"] = result.get("error", "")
        yield row
