"""Options `backtest` and `sweep` share: one spelling, one help text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trading_engine.app.cli.common import errors

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
TimeframeOption = Annotated[
    str | None,
    typer.Option(
        "--timeframe",
        help="Bar length: of the --data files (default: inferred from their spacing; e.g. "
        "1h, 1d, 1w, 1M for calendar months), or of the bars built from --trades (default 1m).",
    ),
]
VolumeParticipationOption = Annotated[
    str | None,
    typer.Option(
        "--volume-participation",
        help="Cap fills at this fraction (0, 1] of each bar's volume; the rest of a market "
        "order is canceled. Default: no cap (orders fill in full, as in backtesting.py).",
    ),
]

RUN_STORE = "events.sqlite3"  # a backtest's event log, inside its --out folder


def store_url(value: str | None) -> str | None:
    """`--database-url URL`, or `--run DIR`: a backtest's run folder, whose event log is
    DIR/events.sqlite3. A value without `://` is taken as a run folder."""
    if value is None or "://" in value:
        return value
    folder = Path(value).expanduser()
    store = folder / RUN_STORE
    if not store.is_file():
        what = "no such folder" if not folder.is_dir() else f"no {RUN_STORE} in it"
        raise typer.BadParameter(f"{value}: not a backtest run folder ({what})")
    return f"sqlite:///{store.resolve()}"


DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        "--run",
        callback=store_url,
        help="Event store URL (default: $DATABASE_URL, else SQLite), or --run DIR: a backtest's "
        "run folder (its --out).",
    ),
]


def warn(message: str) -> None:
    """What a bar file's reader had to change (e.g. prices rounded), on stderr."""
    errors.print(f"[yellow]warning:[/yellow] {message}", highlight=False)
