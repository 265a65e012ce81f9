"""`trading-engine audit`: an order's or a signal's whole trail from the event log."""

from __future__ import annotations

from typing import Annotated

import typer

from trading_engine.app.cli.common import console, fail, settings_for
from trading_engine.app.cli.options import DatabaseOption

audit_cli = typer.Typer(
    help="What the event log says about an order or a signal.", no_args_is_help=True
)


@audit_cli.command("order")
def audit_order_command(
    order_id: Annotated[str, typer.Argument(help="Engine order id (UUID) or exchange order id.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Every transition of an order, its causing signal and decision, and its fills."""
    from trading_engine.app.audit.trail import AmbiguousOrder, audit_order, order_document
    from trading_engine.app.audit.view import json_text, print_order_audit
    from trading_engine.app.bootstrap.databases import bootstrap
    from trading_engine.domain.errors import UnknownOrder

    engine = bootstrap(settings_for(database_url).DATABASE_URL)
    try:
        found = audit_order(engine.store, order_id)
    except (UnknownOrder, AmbiguousOrder) as error:
        raise fail(str(error), code=1) from None
    finally:
        engine.close()
    if as_json:
        print(json_text(order_document(found)))
    else:
        print_order_audit(console, found)


@audit_cli.command("signal")
def audit_signal_command(
    signal_id: Annotated[str, typer.Argument(help="The signal id.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    database_url: DatabaseOption = None,
) -> None:
    """What a signal led to: its decision and each order's status and trail."""
    from trading_engine.app.audit.signal import UnknownSignal, audit_signal, signal_document
    from trading_engine.app.audit.view import json_text, print_signal_audit
    from trading_engine.app.bootstrap.databases import bootstrap

    engine = bootstrap(settings_for(database_url).DATABASE_URL)
    try:
        found = audit_signal(engine.store, signal_id)
    except UnknownSignal as error:
        raise fail(str(error), code=1) from None
    finally:
        engine.close()
    if as_json:
        print(json_text(signal_document(found)))
    else:
        print_signal_audit(console, found)
