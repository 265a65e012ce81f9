"""`trading-engine projections ...`: status, run (catch up / follow), rebuild."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from trading_engine.app.cli.common import errors, fail, progress, settings_for
from trading_engine.app.cli.options import DatabaseOption

# The engine's modules are imported by the commands that use them: `--help` loads none.
if TYPE_CHECKING:
    from trading_engine.app.bootstrap.databases import ProjectionWiring

projections_cli = typer.Typer(
    help="Read tables derived from the event log: status, run, rebuild.", no_args_is_help=True
)
console = Console()

NAMES = ("orders", "positions")  # the keys of _makers()


def _makers() -> dict:
    from trading_engine.app.projections.tables import OrdersProjection, PositionsProjection

    return {"orders": OrdersProjection, "positions": PositionsProjection}


def _wiring(database_url: str | None) -> ProjectionWiring:
    from trading_engine.app.bootstrap.databases import projections
    from trading_engine.app.runtime.config import ConfigError

    settings = settings_for(database_url)
    try:
        return projections(settings.DATABASE_URL, settings.PROJECTION_BATCH_SIZE)
    except ConfigError as error:
        raise fail(str(error)) from None


@projections_cli.command("status")
def status(
    database_url: DatabaseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Each projection's position in the log, the log's head, the lag and its tables' rows."""
    import orjson
    from rich.table import Table

    wiring = _wiring(database_url)
    try:
        report = []
        for runner in wiring.runners:
            state = runner.status()
            tables = wiring.store.tables(runner.projection.tables)
            report.append(
                {
                    "projection": state.name,
                    "position": state.position,
                    "head": state.head,
                    "lag": state.lag,
                    "rows": {t.name: t.rows for t in tables},
                }
            )
    finally:
        wiring.close()
    if as_json:
        print(orjson.dumps(report).decode())
        return
    table = Table(title="projections")
    for column in ("projection", "position", "log head", "lag", "rows"):
        table.add_column(column)
    for row in report:
        rows = ", ".join(f"{name} {count}" for name, count in row["rows"].items())
        table.add_row(
            row["projection"], str(row["position"]), str(row["head"]), str(row["lag"]), rows
        )
    console.print(table)


@projections_cli.command("run")
def run(
    database_url: DatabaseOption = None,
    once: Annotated[bool, typer.Option("--once", help="Catch up to the head, then exit.")] = False,
) -> None:
    """Apply new events to the tables: once, or following the log until SIGTERM/SIGINT."""
    from trading_engine.app.projections.runner import ProjectionFailed, follow_all
    from trading_engine.app.runtime.service import stop_on_signals

    wiring = _wiring(database_url)
    try:
        if once:
            with progress("{task.description}") as bar:
                for runner in wiring.runners:
                    task = bar.add_task(runner.projection.name, total=None)
                    runner.catch_up(
                        lambda at, head, t=task: bar.update(t, completed=at, total=head)
                    )
        else:
            settings = settings_for(database_url)
            with stop_on_signals() as should_stop:
                follow_all(
                    wiring.runners,
                    should_stop,
                    wiring.watcher,
                    poll_interval=settings.PROJECTION_POLL_INTERVAL_SECONDS,
                )
        for runner in wiring.runners:
            state = runner.status()
            console.print(f"{state.name}: at {state.position} of {state.head} (lag {state.lag})")
    except ProjectionFailed as failed:
        errors.print(f"[red]{failed}[/red]")
        raise typer.Exit(1) from None
    finally:
        wiring.close()


@projections_cli.command("rebuild")
def rebuild_command(
    name: Annotated[str, typer.Argument(help="orders, positions or all.")] = "all",
    database_url: DatabaseOption = None,
) -> None:
    """Rebuild projections from the log into fresh tables while the live ones keep serving,
    then swap them in, one transaction per projection."""
    from trading_engine.app.projections.runner import ProjectionFailed, rebuild
    from trading_engine.ports.projections import ProjectionStoreError

    if name != "all" and name not in NAMES:
        errors.print(f"[red]unknown projection {name!r}: choose {', '.join(NAMES)} or all[/red]")
        raise typer.Exit(2)
    makers = _makers()
    chosen = list(NAMES) if name == "all" else [name]
    wiring = _wiring(database_url)
    try:
        with progress("{task.description}") as bar:
            for projection in chosen:
                task = bar.add_task(f"rebuild {projection}", total=None)
                at = rebuild(
                    lambda p=projection: makers[p](wiring.log),
                    wiring.log,
                    wiring.store,
                    progress=lambda done, head, t=task: bar.update(t, completed=done, total=head),
                )
                bar.update(task, completed=at, total=at)
        for state in wiring.store.tables([t for p in chosen for t in makers[p].tables]):
            console.print(f"{state.name}: {state.rows} rows")
    except ProjectionFailed as failed:
        errors.print(f"[red]{failed}[/red] (the live tables are unchanged)")
        raise typer.Exit(1) from None
    except ProjectionStoreError as error:
        errors.print(f"[red]{error}[/red] (the live tables are unchanged)")
        raise typer.Exit(1) from None
    finally:
        wiring.close()
