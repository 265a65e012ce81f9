"""Walk-forward runs: every training window's grid, then each window's chosen point on its
test window, as sweep jobs (app/backtest/walk_forward.py has the arithmetic).

All the training points of all the windows are independent: they go to one
:func:`run_sweep` call, which is what keeps a pool (or a cluster) busy; the test runs, one
per window, to a second call once the choices are known. A test run is the chosen point's
job over [train start, test end) trading from the test start (``trade_from``): the bars
before the test window warm the strategy up, as live trading would have had them, and no
order or equity comes before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from trading_engine.app.backtest.walk_forward import (
    Window,
    choose,
    summarise,
)
from trading_engine.app.bootstrap.backtests import (
    new_backtest_venue,
    read_bar_files,
    synthetic_bar_set,
)
from trading_engine.app.bootstrap.strategy import strategy_factory
from trading_engine.app.bootstrap.sweep import (
    Progress,
    SweepJob,
    backtest_settings,
    grid,
    run_sweep,
)
from trading_engine.domain.bars import bar_end
from trading_engine.domain.models import OHLCV

__all__ = ["DataSpan", "data_span", "walk_forward", "warmup_bars"]


@dataclass(frozen=True)
class DataSpan:
    """When the data start and end (where the last bar closes), and every bar time."""

    start: datetime
    end: datetime
    times: list[datetime]  # sorted, each once

    def bars_in(self, start: datetime, end: datetime) -> int:
        """Bar times in [start, end)."""
        import bisect

        return bisect.bisect_left(self.times, end) - bisect.bisect_left(self.times, start)


def _bars(job: SweepJob, warn: Callable[[str], None] | None = None) -> dict[str, list[OHLCV]]:
    venue = new_backtest_venue()
    if job.synthetic is not None:
        count, seed, symbol = job.synthetic
        return synthetic_bar_set(count, seed, symbol, venue, job.timeframe or "1m")
    symbols = list(job.symbols) if job.symbols else None
    return read_bar_files([Path(p) for p in job.data], symbols, venue, job.timeframe, warn=warn)


def data_span(job: SweepJob, warn: Callable[[str], None] | None = None) -> DataSpan:
    """The span of the bars a job reads (its data or synthetic bars; unreadable → raises)."""
    bars = _bars(job, warn)
    series = [s for s in bars.values() if s]
    if not series:
        raise ValueError("the data hold no bar")
    return DataSpan(
        start=min(s[0].timestamp for s in series),
        end=max(bar_end(s[-1]) for s in series),
        times=sorted({bar.timestamp for s in series for bar in s}),
    )


def warmup_bars(strategy: str, parameters: dict[str, Any]) -> int:
    """Bars the strategy needs before it can decide, with these parameters (a ConfigError
    if they are not valid for it)."""
    factory = strategy_factory(backtest_settings("memory://", strategy), parameters)
    return int(factory("check", "check").warmup_bars)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def walk_forward(
    template: SweepJob,
    axes: dict[str, list[Any]],
    windows: Sequence[Window],
    *,
    metric: str,
    descending: bool = True,
    workers: int = 1,
    training_progress: Progress | None = None,
    test_progress: Progress | None = None,
    **sweep_options: Any,
) -> dict[str, Any]:
    """Run the walk-forward and return its results (``summarise``'s document).

    ``template``: the job every run is made from (data, strategy, fixed parameters, cash,
    costs); each run gets its point, window and number (training points numbered first,
    window by window in grid order, then the test runs). ``sweep_options`` go to both
    :func:`run_sweep` calls (a map function, a cluster's runner)."""
    points = grid(axes)
    training_jobs = [
        replace(
            template,
            number=index * len(points) + n,
            point=point,
            start=_iso(window.train_start),
            end=_iso(window.train_end),
            trade_from=None,
        )
        for index, window in enumerate(windows)
        for n, point in enumerate(points, start=1)
    ]
    if training_jobs:
        results = run_sweep(
            training_jobs, workers=workers, progress=training_progress, **sweep_options
        )
    else:
        results = []
    training = [results[i * len(points) : (i + 1) * len(points)] for i in range(len(windows))]
    test_jobs: dict[int, SweepJob] = {}
    for index, (window, window_results) in enumerate(zip(windows, training, strict=True)):
        chosen = choose(window_results, metric, descending)
        if chosen is None:
            continue
        test_jobs[index] = replace(
            template,
            number=len(training_jobs) + len(test_jobs) + 1,
            point=dict(window_results[chosen]["parameters"]),
            start=_iso(window.train_start),
            end=_iso(window.test_end),
            trade_from=_iso(window.test_start),
            detail=True,  # the curve and trades come back too: they are stitched
        )
    ran = (
        run_sweep(
            list(test_jobs.values()), workers=workers, progress=test_progress, **sweep_options
        )
        if test_jobs
        else []
    )
    by_window = dict(zip(test_jobs, ran, strict=True))
    tests = [by_window.get(index) for index in range(len(windows))]
    return summarise(
        windows,
        training,
        tests,
        metric=metric,
        descending=descending,
        initial_cash=Decimal(template.cash),
    )
