"""A bar backtest run in-process, wired as `trading-engine backtest` wires it."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from trading_engine.app.backtest.results import BacktestResult
from trading_engine.app.bootstrap.backtests import BacktestOptions, bar_backtest, read_bar_files
from trading_engine.app.bootstrap.sweep import backtest_settings


def run_bar_files(
    paths: list[Path],
    strategy: str,
    overrides: dict[str, Any],
    *,
    cash: int = 10_000,
    commission: str = "0.002",
    fraction: str | None = None,
    database_url: str = "memory://",
    warn: Callable[[str], None] | None = None,
) -> BacktestResult:
    """One backtest over `paths` (a bar file per symbol), all-in sizing unless `fraction`."""
    options = BacktestOptions(
        cash=Decimal(cash),
        commission=Decimal(commission),
        strategy_overrides=overrides,
        **({"fraction": Decimal(fraction)} if fraction is not None else {}),
    )
    runner, close = bar_backtest(
        backtest_settings(database_url, strategy), read_bar_files(paths, warn=warn), options
    )
    try:
        return runner.run()
    finally:
        close()
