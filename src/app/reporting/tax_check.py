"""Three derivations of realized PnL that must agree (issue 7, reconciliation).

* the tax export's realized gain for the year (moving-average: the engine's positions carry
  cost the same way, fees of acquisitions in the cost, fees of disposals deducted);
* the executions export: its rows (exact text) replayed through a position's own arithmetic,
  the realized PnL of the fills executed in that JST year;
* the positions projection (the `positions` table): its realized PnL, all history, equal to
  the executions replayed up to the log's head.

Any difference names itself; `trading-engine export tax --check` exits 1 on one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from trading_engine.app.reporting.log_exports import ExportFilter, executions
from trading_engine.domain.position import Position
from trading_engine.domain.tax_report import jst_year
from trading_engine.domain.values import ZERO, Side
from trading_engine.ports.event_store import EventStore


@dataclass(frozen=True, slots=True)
class Reconciliation:
    year: int
    tax_gain: Decimal
    executions_year: Decimal
    executions_all: Decimal
    projection_all: Decimal | None  # None: no positions table here

    @property
    def differences(self) -> list[str]:
        found = []
        if _cents(self.tax_gain) != _cents(self.executions_year):
            found.append(
                f"tax export {self.tax_gain} ≠ executions export {self.executions_year} "
                f"for {self.year}"
            )
        if self.projection_all is not None and self.projection_all != self.executions_all:
            found.append(
                f"positions projection {self.projection_all} ≠ executions export "
                f"{self.executions_all} (all history)"
            )
        return found


def _cents(value: Decimal) -> Decimal:
    """At the tables' precision (DECIMAL(20, 8)): the derivations divide in different orders."""
    return value.quantize(Decimal("1e-8"))


def realized_from_executions(rows: Iterable[dict[str, str]], year: int) -> tuple[Decimal, Decimal]:
    """(realized PnL of the fills executed in `year`, realized PnL of all of them)."""
    books: dict[tuple[str, str], Position] = {}
    in_year = everything = ZERO
    for row in rows:
        key = (row["exchange"], row["symbol"])
        book = books.get(key)
        if book is None:
            book = books[key] = Position(*key)
        before = book.realized_pnl
        book._apply_fill(  # the aggregate's own arithmetic, without recording anything
            Side(row["side"]), Decimal(row["price"]), Decimal(row["size"]), Decimal(row["fee"])
        )
        gained = book.realized_pnl - before
        everything += gained
        if jst_year(datetime.fromisoformat(row["time"])) == year:
            in_year += gained
    return in_year, everything


def reconcile(
    store: EventStore,
    year: int,
    tax_gain: Decimal,
    projection_rows: list[dict[str, Any]] | None,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    include_simulated: bool = False,
) -> Reconciliation:
    """The three derivations over the same venues (real exchanges only, as the tax export,
    unless `include_simulated`)."""

    def scope() -> ExportFilter:
        return ExportFilter(exchange=exchange, symbol=symbol, include_simulated=include_simulated)

    rows = executions(store, scope())
    executions_year, executions_all = realized_from_executions(rows, year)
    projection_all = None
    if projection_rows is not None:
        kept = scope()
        projection_all = sum(
            (
                Decimal(str(row["realized_pnl"]))
                for row in projection_rows
                if kept.keeps_venue(str(row["exchange"]), str(row["symbol"]))
            ),
            ZERO,
        )
        # the table holds DECIMAL(20, 8): compare at that precision
        executions_all = executions_all.quantize(Decimal("1e-8"))
        projection_all = projection_all.quantize(Decimal("1e-8"))
    return Reconciliation(year, tax_gain, executions_year, executions_all, projection_all)
