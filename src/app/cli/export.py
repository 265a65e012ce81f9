"""`trading-engine export ...`: documents read from the event log (tax, ...)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from trading_engine.app.cli.common import errors, fail, progress, settings_for
from trading_engine.app.cli.options import DatabaseOption

# The engine's modules are imported by the commands that use them: `--help` loads none.
if TYPE_CHECKING:
    from trading_engine.app.reporting.log_exports import ExportFilter
    from trading_engine.domain.tax_report import Method
    from trading_engine.ports.event_store import EventStore

export_cli = typer.Typer(help="Documents exported from the event log.", no_args_is_help=True)

YEARS = (2000, 2100)

IncludeSimulatedOption = Annotated[
    bool,
    typer.Option(
        "--include-simulated",
        help="Also cover simulated venues (backtest_*, paper_*, demo): left out by default, "
        "since these documents feed accounts and taxes. Naming one with --exchange includes it.",
    ),
]


def _year(value: str) -> int:
    text = value.strip()
    if not re.fullmatch(r"\d{4}", text) or not YEARS[0] <= int(text) <= YEARS[1]:
        raise fail(
            f"invalid --year {value!r}: expected a 4-digit year from {YEARS[0]} to {YEARS[1]}"
        )
    return int(text)


def _method(value: str) -> Method:
    from trading_engine.domain.errors import InvalidValue
    from trading_engine.domain.tax_report import Method

    try:
        return Method.parse(value)
    except InvalidValue:
        allowed = "|".join(m.value for m in Method)
        raise fail(f"invalid --method {value!r}: expected {allowed}") from None


def _database_url(database_url: str | None) -> str:
    from trading_engine.app.bootstrap.databases import database
    from trading_engine.app.runtime.config import ConfigError

    url = settings_for(database_url).DATABASE_URL
    try:
        path = database(url).path  # a SQLite file, or None
        if isinstance(path, Path) and not path.is_file():
            raise fail(f"no event store at {path} (DATABASE_URL {url})")
        return url
    except ConfigError as error:
        raise fail(str(error)) from None


def _open_store(url: str) -> EventStore:
    """The event store at `url`; a bad URL exits 2, one that cannot be opened 1."""
    import psycopg

    from trading_engine.app.bootstrap.databases import open_event_store
    from trading_engine.app.runtime.config import ConfigError

    try:
        return open_event_store(url)
    except ConfigError as error:
        raise fail(str(error)) from None
    except (OSError, psycopg.Error) as error:
        raise fail(f"cannot open the event store: {error}", code=1) from None


@export_cli.command("tax")
def tax(
    year: Annotated[str, typer.Option("--year", help="JST calendar year, e.g. 2026.")],
    method: Annotated[
        str, typer.Option("--method", help="Cost method: moving-average | total-average.")
    ],
    exchange: Annotated[
        str | None, typer.Option("--exchange", help="Only this exchange (e.g. gmo).")
    ] = None,
    symbol: Annotated[str | None, typer.Option("--symbol", help="Only this symbol.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="json | csv.")] = "json",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write here (atomically); default stdout.")
    ] = None,
    database_url: DatabaseOption = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Also reconcile with the executions export and the positions projection.",
        ),
    ] = False,
    include_simulated: IncludeSimulatedOption = False,
) -> None:
    """Realized gains of a JST calendar year, for the tax return.

    Per symbol: acquisitions and disposals, acquisition cost by the method (移動平均法 /
    総平均法, fees in the cost of acquisitions and deducted from proceeds), gains per disposal
    and in total, the holding carried out; margin (`_JPY`) and short sales: gains on closing.
    Amounts in the file are exact decimals.
    """
    import psycopg

    from trading_engine.app.reporting.log_exports import ExportFilter
    from trading_engine.app.reporting.tax_export import (
        FORMATS,
        no_trades_note,
        tax_report,
        write_report,
    )

    # Every argument is checked before anything is opened.
    tax_year = _year(year)
    tax_method = _method(method)
    if fmt not in FORMATS:
        raise fail(f"invalid --format {fmt!r}: expected {'|'.join(FORMATS)}")
    url = _database_url(database_url)
    store = _open_store(url)
    covered = ExportFilter(exchange=exchange, symbol=symbol, include_simulated=include_simulated)
    try:
        head = store.chain_head()  # first: the report covers at least up to this head
        report = tax_report(store, tax_year, tax_method, scope=covered)
        checked = (
            _reconcile(store, url, report, exchange, symbol, include_simulated) if check else None
        )
    except psycopg.Error as error:
        raise fail(f"cannot read the event log: {error}", code=1) from None
    finally:
        store.close()
    note = no_trades_note(report, exchange, symbol)
    if note:
        errors.print(note, highlight=False)
    _say_left_out(covered)
    try:
        write_report(report, fmt, out, sys.stdout.buffer, note, head, covered.venues())
    except OSError as error:
        raise fail(f"cannot write {out}: {error}", code=1) from None
    if out is not None:
        _summary(report, out, exchange, symbol)
    if checked is not None:
        _report_check(checked)


def _say_left_out(covered: ExportFilter) -> None:
    if covered.left_out:
        errors.print(
            f"left out simulated venues: {', '.join(sorted(covered.left_out))} "
            "(--include-simulated to cover them)",
            highlight=False,
        )


def _reconcile(
    store,
    url: str,
    report,
    exchange: str | None,
    symbol: str | None,
    include_simulated: bool,
):
    """Moving-average gains (the engine's own cost method) against the executions export and
    the positions projection, brought up to the log's head first."""
    from trading_engine.app.bootstrap.databases import projections
    from trading_engine.app.reporting.log_exports import ExportFilter
    from trading_engine.app.reporting.tax_check import reconcile
    from trading_engine.app.reporting.tax_export import tax_report
    from trading_engine.domain.tax_report import Method

    moving = report
    if report.method is not Method.MOVING_AVERAGE:
        moving = tax_report(
            store,
            report.year,
            Method.MOVING_AVERAGE,
            scope=ExportFilter(
                exchange=exchange, symbol=symbol, include_simulated=include_simulated
            ),
        )
    wiring = projections(url)
    try:
        for runner in wiring.runners:
            runner.catch_up()
        rows = wiring.store.rows("positions")
    finally:
        wiring.close()
    return reconcile(
        store,
        report.year,
        moving.total.realized_gain,
        rows,
        exchange=exchange,
        symbol=symbol,
        include_simulated=include_simulated,
    )


def _report_check(result) -> None:
    errors.print(
        f"check {result.year}: tax (moving-average) {result.tax_gain:.8f}, executions export "
        f"{result.executions_year:.8f}; all history: executions {result.executions_all:.8f}, "
        f"positions projection {result.projection_all:.8f}",
        highlight=False,
    )
    if result.differences:
        for difference in result.differences:
            errors.print(f"[red]mismatch: {difference}[/red]", highlight=False)
        raise typer.Exit(1)
    errors.print("[green]they agree[/green]")


def _summary(report, out: Path, exchange: str | None, symbol: str | None) -> None:
    """A short account on the terminal, rounded to the yen (the file is exact)."""
    from trading_engine.app.reporting.tax_export import scope

    console = Console(soft_wrap=True)
    console.print(
        f"tax {report.year} ({report.method.value}) for {scope(exchange, symbol)} → {out}",
        highlight=False,
    )
    for s in report.symbols:
        if s.kind == "spot":
            held = f"carried out {s.carried_out.quantity} at cost {s.carried_out.cost:,.0f}"
        else:
            held = "open: " + (
                ", ".join(
                    f"{p.quantity} @ {p.average_price:,.0f} on {p.exchange}"
                    for p in s.open_positions
                )
                or "none"
            )
        console.print(
            f"  {s.symbol} ({s.kind}): realized gain {s.realized_gain:,.0f}, "
            f"proceeds {s.proceeds:,.0f}, cost {s.cost:,.0f}, fees {s.fees:,.0f}; {held}",
            highlight=False,
        )
    console.print(f"  total realized gain {report.total.realized_gain:,.0f}", highlight=False)


def _moment(name: str, value: str | None) -> datetime | None:
    """`2026-01-01` or an ISO time; naive means UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise fail(f"invalid {name} {value!r}: expected a date or time, e.g. 2026-01-01") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _log_export(
    kind: str,
    out: Path,
    fmt: str,
    start: str | None,
    end: str | None,
    exchange: str | None,
    symbol: str | None,
    database_url: str | None,
    include_simulated: bool,
) -> None:
    import psycopg

    from trading_engine.app.reporting.export_files import FORMATS as EXPORT_FORMATS
    from trading_engine.app.reporting.export_files import write_export
    from trading_engine.app.reporting.log_exports import KINDS, ExportFilter

    # Everything is checked before anything is opened or written.
    if fmt not in EXPORT_FORMATS:
        raise fail(f"invalid --format {fmt!r}: expected {'|'.join(EXPORT_FORMATS)}")
    keep = ExportFilter(
        _moment("--from", start), _moment("--to", end), exchange, symbol, include_simulated
    )
    if keep.start and keep.end and keep.start >= keep.end:
        raise fail("--from must be before --to")
    url = _database_url(database_url)
    store = _open_store(url)
    columns, rows_of = KINDS[kind]
    try:
        head = store.chain_head()
        manifest = {
            "kind": kind,
            "from": start,
            "to": end,
            "exchange": exchange,
            "symbol": symbol,
            "log_head_position": store.max_position(),
            "chain_head": None if head is None else {"position": head[0], "hash": head[1]},
            "exported_at": datetime.now(UTC).isoformat(),
        }

        with progress(f"export {kind}") as bar:
            task = bar.add_task(kind, total=None)
            rows = rows_of(store, keep, lambda at, all_: bar.update(task, completed=at, total=all_))
            count = write_export(_noting_venues(rows, keep, manifest), columns, out, fmt, manifest)
    except psycopg.Error as error:
        raise fail(f"cannot read the event log: {error}", code=1) from None
    except OSError as error:
        raise fail(f"cannot write {out}: {error}", code=1) from None
    finally:
        store.close()
    _say_left_out(keep)
    where = "no chain" if head is None else f"chain head {head[0]} {head[1][:16]}…"
    at = manifest["log_head_position"]
    Console().print(f"{count} {kind} rows → {out} (read at log position {at}, {where})")


OutOption = Annotated[Path, typer.Option("--out", help="File to write (atomically).")]
FormatOption = Annotated[str, typer.Option("--format", help="csv | jsonl | parquet.")]
FromOption = Annotated[str | None, typer.Option("--from", help="From this time (inclusive).")]
ToOption = Annotated[str | None, typer.Option("--to", help="Until this time (exclusive).")]
ExchangeOption = Annotated[str | None, typer.Option("--exchange", help="Only this exchange.")]
SymbolOption = Annotated[str | None, typer.Option("--symbol", help="Only this symbol.")]


LOG_EXPORTS = {
    "orders": "Every order transition: time, ids, event, state before/after, signal, strategy, "
    "the exchange's code and message, and each fill.",
    "executions": "Every fill: execution id, order, side, price, size, fee, time.",
    "signals": "Every signal execution received, with the risk decision it got (and why).",
}


def _log_export_command(kind: str) -> Callable[..., None]:
    """The command `export KIND`: the three log exports take the same options."""

    def command(
        out: OutOption,
        fmt: FormatOption = "csv",
        start: FromOption = None,
        end: ToOption = None,
        exchange: ExchangeOption = None,
        symbol: SymbolOption = None,
        database_url: DatabaseOption = None,
        include_simulated: IncludeSimulatedOption = False,
    ) -> None:
        _log_export(kind, out, fmt, start, end, exchange, symbol, database_url, include_simulated)

    command.__name__ = f"export_{kind}"
    command.__doc__ = LOG_EXPORTS[kind]
    return command


for _kind in LOG_EXPORTS:
    export_cli.command(_kind)(_log_export_command(_kind))


def _noting_venues(rows, keep: ExportFilter, manifest: dict):
    """Pass the rows through; at the end (before the manifest is written) note the venues."""
    yield from rows
    manifest.update(keep.venues())
