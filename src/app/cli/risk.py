"""`trading-engine risk`: the trading state of an exchange account: status, kill switch
(halt), reduce-only, resume. Kept in the event log; the running engine sees it before its
next order.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from trading_engine.app.cli.common import console, settings_for
from trading_engine.app.cli.options import DatabaseOption

risk_cli = typer.Typer(help="The trading state: status, kill switch, resume.", no_args_is_help=True)


ReasonArgument = Annotated[str, typer.Option("--reason", help="Why (kept in the event log).")]


def _control(database_url: str | None, change: str | None, reason: str) -> None:
    from trading_engine.app.bootstrap.execution import risk_limits, trading_control

    settings = settings_for(database_url)
    service, close = trading_control(settings)
    try:
        if change == "halt":
            control = service.halt(reason)
        elif change == "reduce":
            control = service.reduce_only(reason)
        elif change == "resume":
            control = service.resume(reason)
        else:
            control = service.control()
            control.evaluate(risk_limits(settings), now=datetime.now(UTC))
        drawdown = control.drawdown_pct(risk_limits(settings), now=datetime.now(UTC))
        console.print(
            f"{settings.EXCHANGE_NAME}: [bold]{control.state.value}[/bold]"
            + (f" ({control.reason})" if control.reason else "")
            + f"; losses in a row {control.losses_in_a_row}/{settings.MAX_CONSECUTIVE_LOSSES}"
            + f"; drawdown {drawdown:.2f}%/{settings.MAX_DRAWDOWN_PCT}%"
            + f" over {settings.DRAWDOWN_WINDOW_DAYS} day(s)"
        )
    finally:
        close()


@risk_cli.command("status")
def risk_status(database_url: DatabaseOption = None) -> None:
    """Show the trading state (ACTIVE, REDUCING, HALTED) and what moves it."""
    _control(database_url, None, "")


@risk_cli.command("halt")
def risk_halt(reason: ReasonArgument = "kill switch", database_url: DatabaseOption = None) -> None:
    """The kill switch: no order goes out until `risk resume`."""
    _control(database_url, "halt", reason)


@risk_cli.command("reduce")
def risk_reduce(reason: ReasonArgument = "operator", database_url: DatabaseOption = None) -> None:
    """Only orders that shrink a position go out."""
    _control(database_url, "reduce", reason)


@risk_cli.command("resume")
def risk_resume(reason: ReasonArgument = "operator", database_url: DatabaseOption = None) -> None:
    """Lift a halt or a pause; drawdown counts afresh from now."""
    _control(database_url, "resume", reason)
