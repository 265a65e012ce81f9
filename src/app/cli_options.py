"""Options `backtest` and `sweep` share: one spelling, one help text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DataOption = Annotated[
    list[Path] | None,
    typer.Option("--data", help="OHLCV bar file (CSV/Parquet); repeat per symbol."),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the synthetic bars.")]
StrategyOption = Annotated[str, typer.Option("--strategy", help="Strategy name.")]
ParamOption = Annotated[
    list[str] | None, typer.Option("--param", help="Strategy parameter NAME=VALUE.")
]
CashOption = Annotated[str, typer.Option("--cash", help="Starting cash.")]
CommissionOption = Annotated[
    str, typer.Option("--commission", help="Fee rate per fill, e.g. 0.002.")
]
SlippageOption = Annotated[
    str, typer.Option("--slippage", help="Adverse price fraction on market orders.")
]
ShortingOption = Annotated[
    bool, typer.Option("--shorting/--no-shorting", help="Dead crosses reverse to short.")
]
SizeOption = Annotated[
    str | None, typer.Option("--size", help="Fixed order size (default: all equity).")
]
FractionOption = Annotated[
    str | None, typer.Option("--fraction", help="Fraction of equity per entry (0, 1].")
]
SizeStepOption = Annotated[
    str | None,
    typer.Option("--size-step", help="Order size step (default: the exchange's, else 1)."),
]
SymbolOption = Annotated[
    list[str] | None, typer.Option("--symbol", help="Symbol of each --data file, in order.")
]
