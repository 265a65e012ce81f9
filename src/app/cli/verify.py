"""`trading-engine verify-log`: recompute the event log's hash chain (issue 7).

Exit 0 when every hashed event still matches (the chain head is printed: publish it, or
compare it with the one an export states); exit 1 naming the first position that does
not match, and the aggregate, version and topic of the event recorded there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from trading_engine.app.cli.common import fail, progress, settings_for
from trading_engine.app.cli.options import DatabaseOption

if TYPE_CHECKING:
    from trading_engine.ports.event_store import ChainReport, EventStore

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def verify_log(
    database_url: DatabaseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Recompute the event log's hash chain; name the first event that does not match."""
    import dataclasses

    import orjson

    from trading_engine.app.bootstrap.databases import open_event_store
    from trading_engine.app.runtime.config import ConfigError

    settings = settings_for(database_url)
    try:
        store: EventStore = open_event_store(settings.DATABASE_URL)
    except ConfigError as error:
        raise fail(str(error)) from None
    try:
        with progress("verify-log", transient=True) as bar:
            task = bar.add_task("verify", total=None)
            report = store.verify_chain(lambda at, last: bar.update(task, completed=at, total=last))
    finally:
        store.close()
    if as_json:
        print(orjson.dumps(dataclasses.asdict(report)).decode())
    else:
        _print(report)
    if not report.ok:
        raise typer.Exit(1)


def _print(report: ChainReport) -> None:
    if report.unhashed:
        console.print(
            f"[yellow]chain starts at position {report.start}: the {report.unhashed} events "
            "before it were recorded before the chain existed and are not hashed[/yellow]"
        )
    if report.ok:
        if report.head is None:
            console.print("event log intact: no hashed events yet (empty log)")
            return
        position, digest = report.head
        console.print(
            f"event log intact: {report.checked} events verified\n"
            f"chain head: position {position} sha256 {digest}"
        )
        return
    where = f"position {report.first_mismatch}" if report.first_mismatch else "the chain"
    errors.print(f"[red]event log does NOT verify at {where}: {report.reason}[/red]")
    if report.aggregate_id is not None:
        errors.print(
            f"  event at {report.first_mismatch}: aggregate {report.aggregate_id} "
            f"version {report.version} topic {report.topic}"
        )
    if report.head is None:
        errors.print("  no event before it verifies")
    else:
        position, digest = report.head
        errors.print(
            f"  the {report.checked} hashed events before it verify, "
            f"up to position {position} sha256 {digest}"
        )
