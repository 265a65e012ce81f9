"""What every command shares: how a failure is said (red, on stderr, exit code 2 for a usage or
configuration error, 1 for a failure at run time), the settings a `--database-url` / `--run`
option names, and the progress bar on stderr.

Only typer and rich are imported here: `--help` of any command loads nothing of the engine.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress

    from trading_engine.app.runtime.config import Settings

# Wide enough for the audit tables when output goes to a file or a CI log.
console = Console(width=None if sys.stdout.isatty() else 150)
errors = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Say `message` on stderr; the caller raises what this returns (`raise fail(...)`)."""
    errors.print(f"[red]{message}[/red]", highlight=False)
    return typer.Exit(code)


def settings_for(database_url: str | None = None) -> Settings:
    """The settings (environment, .env), with `database_url` over DATABASE_URL if given; a
    bad setting stops the command with exit code 2."""
    from trading_engine.app.runtime.config import ConfigError, load_settings

    try:
        return load_settings(**({"DATABASE_URL": database_url} if database_url else {}))
    except ConfigError as error:
        raise fail(str(error)) from None


def progress(label: str, *, transient: bool = False) -> Progress:
    """A bar on stderr: `label`, the bar, done/total, elapsed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=transient,
    )
