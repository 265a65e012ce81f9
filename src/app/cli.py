"""The `trading-engine` command."""

from __future__ import annotations

import sys
import uuid
from decimal import Decimal
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.audit import order_trail
from app.bootstrap import bootstrap
from app.config import ConfigError, load_settings
from app.demo import order_summary, scripted_lifecycle

cli = typer.Typer(
    name="trading-engine",
    help="Event-sourced trading core for crypto exchanges (GMO Coin first).",
    no_args_is_help=True,
    add_completion=False,
)
# Wide enough for the audit tables when output goes to a file or a CI log.
console = Console(width=None if sys.stdout.isatty() else 150)


def _settings(database_url: str | None):
    try:
        overrides = {"DATABASE_URL": database_url} if database_url else {}
        return load_settings(**overrides)
    except ConfigError as error:
        Console(stderr=True).print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None


DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", help="Event store URL (default: $DATABASE_URL, else SQLite)."),
]


@cli.command()
def demo(database_url: DatabaseOption = None) -> None:
    """Run a scripted order lifecycle on the event store and print its audit trail."""
    settings = _settings(database_url)
    engine = bootstrap(settings.DATABASE_URL)
    try:
        run_id = uuid.uuid4().hex[:8]
        console.print(f"[bold]trading-engine demo[/bold] run {run_id} on {settings.DATABASE_URL}")
        result = scripted_lifecycle(engine.orders, engine.clock.now(), run_id)
        for order_id in result.order_ids:
            order = engine.store.get_order(order_id)
            table = Table(
                title=f"order {order_id} (signal {order.signal_id})", title_justify="left"
            )
            for column in ("v", "event", "before", "after", "filled", "avg price", "details"):
                table.add_column(column)
            for step in order_trail(engine.store, order_id):
                table.add_row(
                    str(step.version),
                    step.event,
                    step.status_before or "",
                    step.status_after,
                    str(step.filled_size),
                    "" if step.average_price is None else f"{step.average_price:.2f}",
                    ", ".join(f"{k}={v}" for k, v in step.details.items()),
                )
            console.print(table)
            console.print(f"  → {order_summary(order)}")
        for note in result.notes:
            console.print(f"• {note}")
        position = result.position
        if position is not None:
            average = "-" if position.average_price is None else f"{position.average_price:.2f}"
            console.print(
                f"[bold]position[/bold] {position.exchange}:{position.symbol} "
                f"(all runs in this store): {position.side} {position.size} @ {average}, "
                f"realized PnL {position.realized_pnl:.8f}, "
                f"unrealized at {result.mark} {position.unrealized_pnl(result.mark):.8f}, "
                f"fees paid {position.fees_paid}"
            )
        console.print(f"event log: {engine.store.max_position()} events recorded in all")
    finally:
        engine.close()


@cli.command()
def config() -> None:
    """Validate the configuration and print it, secrets redacted."""
    settings = _settings(None)
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
