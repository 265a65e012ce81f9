"""The tax export: a year's realized gains from the fills in the event log, as JSON or CSV.

The fills are the positions' `FillApplied` events, read from the log page by page in the
order they were recorded (the order the `Position` aggregates applied them); the tax rules
are `domain.tax`. Amounts are written exact, as decimal strings, unrounded.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import orjson

from trading_engine.app.reporting.log_exports import ExportFilter
from trading_engine.domain.position import Position
from trading_engine.domain.tax import TaxBook
from trading_engine.domain.tax_report import (
    JST,
    Holding,
    Method,
    SymbolReport,
    TaxFill,
    TaxReport,
    Totals,
)
from trading_engine.files import write_bytes_atomically
from trading_engine.ports.event_store import EventStore

FORMATS = ("json", "csv")
PAGE = 5000


def scope(exchange: str | None, symbol: str | None) -> str:
    """'BTC on gmo', 'all symbols on gmo', ... as the report's note names what it covers."""
    return f"{symbol or 'all symbols'} on {exchange or 'all exchanges'}"


def fills_from_log(
    store: EventStore,
    exchange: str | None = None,
    symbol: str | None = None,
    page: int = PAGE,
    *,
    scope: ExportFilter | None = None,
) -> Iterator[TaxFill]:
    """Every fill of the positions in `scope` (default: `exchange` and `symbol`, real
    exchanges only), in the log's order, page by page."""
    scope = scope or ExportFilter(exchange=exchange, symbol=symbol)
    books: dict[UUID, tuple[str, str]] = {}
    start = 1
    while True:
        events = store.read_log(start, page)
        for recorded in events:
            event = recorded.event
            if isinstance(event, Position.Created):
                if scope.keeps_venue(event.exchange, event.symbol):
                    books[recorded.aggregate_id] = (event.exchange, event.symbol)
            elif isinstance(event, Position.FillApplied) and recorded.aggregate_id in books:
                fill_exchange, fill_symbol = books[recorded.aggregate_id]
                yield TaxFill(
                    time=event.executed_at,
                    exchange=fill_exchange,
                    symbol=fill_symbol,
                    side=event.side,
                    price=event.price,
                    size=event.size,
                    fee=event.fee,
                )
        if len(events) < page:
            return
        start = events[-1].position + 1


def tax_report(
    store: EventStore,
    year: int,
    method: Method | str,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    scope: ExportFilter | None = None,
) -> TaxReport:
    book = TaxBook(year, method)
    for fill in fills_from_log(store, exchange, symbol, scope=scope):
        book.add(fill)
    return book.report()


def no_trades_note(report: TaxReport, exchange: str | None, symbol: str | None) -> str | None:
    if not report.empty:
        return None
    return f"no trades in {report.year} for {scope(exchange, symbol)}"


# ----- documents ------------------------------------------------------------------------------


def _amount(value: Decimal | None) -> str | None:
    """Exact, in positional notation (never `0E-8` or `1E+2`)."""
    return None if value is None else _text(value)


def _text(value: Decimal) -> str:
    return f"{value:f}"


def _time(moment: datetime) -> str:
    return moment.astimezone(JST).isoformat()


def _totals(totals: Totals) -> dict[str, str | None]:
    return {
        "realized_gain": _amount(totals.realized_gain),
        "proceeds": _amount(totals.proceeds),
        "cost": _amount(totals.cost),
        "fees": _amount(totals.fees),
    }


def _holding(holding: Holding) -> dict[str, str | None]:
    return {"quantity": _amount(holding.quantity), "cost": _amount(holding.cost)}


def _symbol(report: SymbolReport) -> dict[str, Any]:
    return {
        "kind": report.kind,
        **_totals(report.totals),
        "trades": report.trades,
        "unit_cost": _amount(report.unit_cost),
        "carried_in": _holding(report.carried_in),
        "carried_out": _holding(report.carried_out),
        "acquisitions": [
            {
                "time": _time(a.time),
                "exchange": a.exchange,
                "quantity": _amount(a.quantity),
                "price": _amount(a.price),
                "fee": _amount(a.fee),
                "cost": _amount(a.cost),
            }
            for a in report.acquisitions
        ],
        "disposals": [
            {
                "time": _time(d.time),
                "exchange": d.exchange,
                "quantity": _amount(d.quantity),
                "price": _amount(d.price),
                "proceeds": _amount(d.proceeds),
                "fee": _amount(d.fee),
                "unit_cost": _amount(d.unit_cost),
                "cost": _amount(d.cost),
                "gain": _amount(d.gain),
            }
            for d in report.disposals
        ],
        "closings": [
            {
                "time": _time(c.time),
                "exchange": c.exchange,
                "side": c.side.value,
                "quantity": _amount(c.quantity),
                "price": _amount(c.price),
                "proceeds": _amount(c.proceeds),
                "cost": _amount(c.cost),
                "fees": _amount(c.fees),
                "gain": _amount(c.gain),
            }
            for c in report.closings
        ],
        "open_positions": [
            {
                "exchange": p.exchange,
                "quantity": _amount(p.quantity),
                "average_price": _amount(p.average_price),
            }
            for p in report.open_positions
        ],
    }


ChainHead = tuple[int, str] | None


def _head(head: ChainHead) -> dict[str, Any] | None:
    return None if head is None else {"position": head[0], "hash": head[1]}


def report_document(
    report: TaxReport,
    note: str | None = None,
    head: ChainHead = None,
    venues: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document: per symbol realized_gain, proceeds, cost, fees (and the lines),
    and the `total`. realized_gain = proceeds − cost − fees, on every line and in total."""
    return {
        "year": report.year,
        "method": report.method.value,
        "timezone": "JST (UTC+09:00): years are Japanese calendar years",
        "amounts": "exact decimal strings, unrounded, in the symbols' quote currency",
        "note": note,
        "chain_head": _head(head),  # the event log's hash-chain head the report was read at
        **(venues or {}),  # the exchanges covered, and the simulated ones left out
        "trades": report.trades,
        "symbols": {s.symbol: _symbol(s) for s in report.symbols},
        "total": _totals(report.total),
    }


CSV_COLUMNS = (
    "row",
    "symbol",
    "kind",
    "time_jst",
    "exchange",
    "side",
    "quantity",
    "price",
    "proceeds",
    "cost",
    "fees",
    "realized_gain",
    "carried_quantity",
    "carried_cost",
)


def report_rows(report: TaxReport, note: str | None = None) -> Iterator[dict[str, str]]:
    """CSV rows: one per disposal (spot) or closing (margin, short sale), the positions open
    at year end (price = average price, no gain), one summary row per symbol (with its
    year-end spot holding), then the total; a note row when the year has no trades."""
    for s in report.symbols:
        for d in s.disposals:
            yield {
                "row": "disposal",
                "symbol": s.symbol,
                "kind": s.kind,
                "time_jst": _time(d.time),
                "exchange": d.exchange,
                "side": "SELL",
                "quantity": _text(d.quantity),
                "price": _text(d.price),
                "proceeds": _text(d.proceeds),
                "cost": _text(d.cost),
                "fees": _text(d.fees),
                "realized_gain": _text(d.gain),
            }
        for c in s.closings:
            yield {
                "row": "closing",
                "symbol": s.symbol,
                "kind": s.kind,
                "time_jst": _time(c.time),
                "exchange": c.exchange,
                "side": c.side.value,
                "quantity": _text(c.quantity),
                "price": _text(c.price),
                "proceeds": _text(c.proceeds),
                "cost": _text(c.cost),
                "fees": _text(c.fees),
                "realized_gain": _text(c.gain),
            }
    for s in report.symbols:
        for p in s.open_positions:
            yield {
                "row": "open_position",
                "symbol": s.symbol,
                "kind": s.kind,
                "exchange": p.exchange,
                "quantity": _text(p.quantity),
                "price": _text(p.average_price),
            }
    for s in report.symbols:
        totals = s.totals
        yield {
            "row": "summary",
            "symbol": s.symbol,
            "kind": s.kind,
            "proceeds": _text(totals.proceeds),
            "cost": _text(totals.cost),
            "fees": _text(totals.fees),
            "realized_gain": _text(totals.realized_gain),
            "carried_quantity": _text(s.carried_out.quantity),
            "carried_cost": _text(s.carried_out.cost),
        }
    total = report.total
    yield {
        "row": "total",
        "proceeds": _text(total.proceeds),
        "cost": _text(total.cost),
        "fees": _text(total.fees),
        "realized_gain": _text(total.realized_gain),
    }
    if note:
        yield {"row": "note", "symbol": note}


def render(
    report: TaxReport,
    fmt: str,
    note: str | None = None,
    head: ChainHead = None,
    venues: dict[str, Any] | None = None,
) -> bytes:
    if fmt == "json":
        document = report_document(report, note, head, venues)
        return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(report_rows(report, note))
        return text.getvalue().encode()
    raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")


def write_report(
    report: TaxReport,
    fmt: str,
    out: Path | None,
    stdout: IO[bytes],
    note: str | None = None,
    head: ChainHead = None,
    venues: dict[str, Any] | None = None,
) -> None:
    data = render(report, fmt, note, head, venues)
    if out is None:
        stdout.write(data)
        stdout.flush()
    else:
        write_bytes_atomically(out, data)
        if fmt == "csv":  # CSV has no place for it: the chain head goes beside the file
            manifest = {
                "year": report.year,
                "method": report.method.value,
                "chain_head": _head(head),
                **(venues or {}),
            }
            write_bytes_atomically(
                out.with_name(out.name + ".manifest.json"), orjson.dumps(manifest)
            )
