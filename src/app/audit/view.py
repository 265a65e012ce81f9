"""The human form of `trading-engine audit order|signal`: a header, the signal and its decision,
then tables of transitions and fills."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trading_engine.app.audit.signal import SignalAudit
from trading_engine.app.audit.trail import OrderAudit, Transition
from trading_engine.domain.order import Order
from trading_engine.domain.signal_decision import SignalDecision


def json_text(document: dict[str, Any]) -> str:
    """One JSON document: Decimals as strings (exact), datetimes ISO 8601, UUIDs as text."""

    def default(value: object) -> str:
        if isinstance(value, Decimal):
            return str(value)
        raise TypeError(f"not JSON: {type(value).__name__}")

    return orjson.dumps(document, default=default, option=orjson.OPT_INDENT_2).decode()


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="milliseconds")


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return _time(value)
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value)


def _details(details: dict[str, Any], skip: frozenset[str] = frozenset()) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in details.items() if k not in skip)


# Shown elsewhere (header, fills table): kept out of the transitions table to keep it narrow.
_SHOWN_ELSEWHERE = frozenset({"signal_id", "executed_at", "source"})


def _order_line(order: Order) -> str:
    price = "" if order.price is None else f" @ {order.price:f}"
    average = "" if order.average_price is None else f" avg {order.average_price:.2f}"
    return (
        f"{order.exchange}:{order.symbol} {order.side.value} {order.order_type.value} "
        f"{order.time_in_force.value} {order.settle} {order.size:f}{price} → "
        f"[bold]{order.status.value}[/bold] filled {order.filled_size:f}{average}"
    )


def _print_signal(console: Console, decision: SignalDecision) -> None:
    indicators = _details(decision.indicators) or "-"
    console.print(
        f"[bold]signal[/bold] {escape(decision.signal_id)}: strategy {escape(decision.strategy)}, "
        f"action {decision.action}, price_ref {decision.price_ref:f}, "
        f"confidence {decision.confidence:f}, at {_time(decision.signal_time)}"
    )
    console.print(f"  indicators: {escape(indicators)}")
    if decision.outcome == "approved":
        verdict = f"[green]approved[/green] → orders {', '.join(decision.order_ids) or '-'}"
    elif decision.outcome == "refused":
        verdict = f"[red]refused[/red]: {escape(decision.reason or '')}"
    else:
        verdict = "received, not decided yet"
    console.print(
        f"[bold]decision[/bold] {verdict} (trading state {decision.trading_state or '-'}"
        f", at {_time(decision.modified_on)})"
    )


def _transitions(title: str, trail: list[Transition]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("v", "time", "event", "before → after", "filled", "avg price", "details"):
        table.add_column(column)
    for step in trail:
        table.add_row(
            str(step.version),
            _time(step.recorded_at),
            step.event,
            f"{step.status_before or '∅'} → {step.status_after}",
            f"{step.filled_size:f}",
            "" if step.average_price is None else f"{step.average_price:.2f}",
            escape(_details(step.details, _SHOWN_ELSEWHERE)),
        )
    return table


def print_order_audit(console: Console, audit: OrderAudit) -> None:
    order = audit.order
    console.print(
        f"[bold]order[/bold] {order.id} (exchange order id {order.exchange_order_id or '-'}, "
        f"signal {escape(order.signal_id)}, leg {order.leg})"
    )
    console.print(f"  {_order_line(order)}")
    if order.reject_code is not None:
        console.print(f"  rejected: {order.reject_code} {escape(order.reject_message or '')}")
    if audit.decision is None:
        console.print("[bold]decision[/bold] no decision recorded for this order's signal")
    else:
        _print_signal(console, audit.decision)
    console.print(_transitions("transitions", audit.trail))
    if not audit.fills:
        console.print("fills: none")
        return
    fills = Table(title="fills", title_justify="left")
    for column in ("execution id", "price", "size", "fee", "executed at", "source"):
        fills.add_column(column)
    for step in audit.fills:
        d = step.details
        fills.add_row(
            escape(str(d["execution_id"])),
            _value(d["price"]),
            _value(d["size"]),
            _value(d["fee"]),
            _time(d["executed_at"]),
            escape(str(d["source"])),
        )
    console.print(fills)


def print_signal_audit(console: Console, audit: SignalAudit) -> None:
    _print_signal(console, audit.decision)
    if not audit.orders:
        console.print("orders: none")
    for outcome in audit.orders:
        order = outcome.order
        console.print(
            f"[bold]order[/bold] {order.id} (exchange order id {order.exchange_order_id or '-'})"
            f": {_order_line(order)}"
        )
        trail = " → ".join(f"{step.event} ({step.status_after})" for step in outcome.trail)
        console.print(f"  trail: {trail}")
