"""The `trading-engine` command.

Start-up (issue 16): this module and the command modules import only typer, rich and the
standard library at their top, which is all `--help` needs; each command imports the engine
(the composition root, the configuration, the adapters behind them) when it runs, so it
loads what it uses and no more. tests/unit/test_cli_imports.py keeps it so.
"""

from __future__ import annotations

import sys

import typer

from trading_engine.app.cli.audit import audit_cli
from trading_engine.app.cli.backtest import backtest
from trading_engine.app.cli.common import console, settings_for
from trading_engine.app.cli.export import export_cli
from trading_engine.app.cli.options import DatabaseOption
from trading_engine.app.cli.projections import projections_cli
from trading_engine.app.cli.risk import risk_cli
from trading_engine.app.cli.service import run
from trading_engine.app.cli.simulation import demo, replay, simulate
from trading_engine.app.cli.sweep import sweep
from trading_engine.app.cli.verify import verify_log
from trading_engine.app.cli.walk_forward import walk_forward

cli = typer.Typer(
    name="trading-engine",
    help="Event-sourced trading core for crypto exchanges (GMO Coin first).",
    no_args_is_help=True,
    add_completion=False,
    # A traceback's local variables would print the broker's key and secret.
    pretty_exceptions_show_locals=False,
)

# In the order `--help` lists them.
cli.command()(demo)
cli.command()(run)
cli.add_typer(projections_cli, name="projections")
cli.add_typer(export_cli, name="export")
cli.command("backtest")(backtest)
cli.command("sweep")(sweep)
cli.command("walk-forward")(walk_forward)
cli.command("verify-log")(verify_log)
cli.add_typer(risk_cli, name="risk")
cli.add_typer(audit_cli, name="audit")
cli.command()(replay)
cli.command()(simulate)


@cli.command()
def migrate(database_url: DatabaseOption = None) -> None:
    """Apply the SQL migrations (package data: adapters/sql/schema) to the DATABASE_URL database."""
    from trading_engine.app.bootstrap.databases import migrate as bootstrap_migrate

    settings = settings_for(database_url)
    applied = bootstrap_migrate(settings.DATABASE_URL)
    console.print(f"applied: {', '.join(applied) if applied else 'nothing (up to date)'}")


@cli.command()
def config() -> None:
    """Validate the configuration and print it, secrets redacted."""
    from decimal import Decimal

    settings = settings_for(None)
    for name, value in settings.model_dump().items():
        shown = "********" if name in ("API_KEY", "API_SECRET") and str(value) else value
        if isinstance(shown, Decimal):
            shown = str(shown)
        console.print(f"{name}={shown}")


def main() -> None:
    try:
        cli()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
