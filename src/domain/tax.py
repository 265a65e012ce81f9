"""Realized gains of a calendar year for Japanese tax returns (暗号資産の所得計算).

Spot symbols (GMO's `BTC`, `ETH`, a backtest's `GOOG`): the acquisition cost of what is sold
is computed by one of the two methods the National Tax Agency allows,

* moving-average (移動平均法): after each acquisition the unit cost is
  (holding cost + acquisition cost) / (holding quantity + acquired quantity); a disposal
  costs quantity × the unit cost at that moment;
* total-average (総平均法): one unit cost per year,
  (cost carried in at 1 January + all acquisition costs of the year) /
  (quantity carried in + all quantity acquired in the year); every disposal of the year uses
  it, and what is left at 31 December is carried into the next year at that unit cost.

Fees are added to the cost of acquisitions and deducted from the proceeds of disposals, so
for a disposal gain = proceeds − fee − cost. Years are JST calendar years (a fill at
2025-12-31T16:00Z belongs to 2026). To report year Y, every fill before Y builds the holding
carried into Y, with the same method applied to each earlier year in turn.

Margin symbols (names ending in `_JPY`, GMO's leverage products) and short sales of a spot
symbol (a sale beyond the holding, which only a backtest does) are taxed when they are
closed: the gain of each closing fill is the realized PnL the `Position` aggregate computes
(net of the fees of both legs), attributed to the JST year of the closing fill. Positions
still open at year end are listed, with no gain.

Every amount of a line splits as realized gain = proceeds − cost − fees:

* spot disposal: proceeds = price × quantity, cost = quantity × unit cost (acquisition fees
  included), fees = the disposal's fee;
* closing (margin or short): proceeds = the value of the sale leg (the closing sale of a
  long, the opening sale of a short), cost = the value of the purchase leg, fees = the fees
  of both legs released by the closing.

Amounts are exact `Decimal`s at the engine's money precision; nothing here rounds (do it when
formatting). Quantities and amounts are in the symbol's quote currency (yen on GMO): there is
no currency conversion.

Fills are taken in the order the engine applied them (the event log's order), which is the
order the `Position` aggregate uses; fills after the reported year are ignored. Each symbol's
holding combines all exchanges, as the tax rules combine holdings of the same asset; margin
positions are kept per exchange, as the exchanges keep them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from trading_engine.domain.position import Position
from trading_engine.domain.tax_report import (
    Acquisition,
    Closing,
    Disposal,
    Holding,
    Method,
    OpenPosition,
    SymbolReport,
    TaxFill,
    TaxReport,
    is_margin,
    jst_year,
)
from trading_engine.domain.values import ZERO, Side, money_context

# ----- the computation ------------------------------------------------------------------------


@dataclass
class _YearFlows:
    """Total-average: what one earlier year added and removed."""

    acquired: Decimal = ZERO
    acquired_cost: Decimal = ZERO
    disposed: Decimal = ZERO


class _ShortBook:
    """Positions taxed on closing (margin, or short sales of a spot symbol), one per
    exchange, computed by the `Position` aggregate's own arithmetic."""

    def __init__(self, symbol: str) -> None:
        self._symbol = symbol
        self._positions: dict[str, Position] = {}

    def quantity(self, exchange: str) -> Decimal:
        position = self._positions.get(exchange)
        return ZERO if position is None else position.quantity

    def apply(self, fill: TaxFill, size: Decimal, fee: Decimal) -> Closing | None:
        """Apply `size` of `fill` (with `fee`, its share of the fill's fee); the closing part,
        if it closes anything."""
        position = self._positions.get(fill.exchange)
        if position is None:
            position = Position.open_book(fill.exchange, self._symbol, at=fill.time)
            self._positions[fill.exchange] = position
        with money_context():
            held = abs(position.quantity)
            closing = position.quantity != ZERO and (position.quantity > ZERO) != (
                fill.side is Side.BUY
            )
            if closing:
                closed = min(size, held)
                closing_fee = fee if size <= held else fee * closed / size
                if closed == held:
                    released_cost, released_fees = position.entry_cost, position.entry_fees
                else:
                    released_cost = position.entry_cost * closed / held
                    released_fees = position.entry_fees * closed / held
                exit_value = fill.price * closed
            before = position.realized_pnl
            # The aggregate's arithmetic, as its FillApplied event applies it (no event here).
            position._apply_fill(fill.side, fill.price, size, fee)
            if not closing:
                return None
            long = fill.side is Side.SELL
            return Closing(
                time=fill.time,
                exchange=fill.exchange,
                side=fill.side,
                quantity=closed,
                price=fill.price,
                proceeds=exit_value if long else released_cost,
                cost=released_cost if long else exit_value,
                fees=released_fees + closing_fee,
                gain=position.realized_pnl - before,
            )

    def open_positions(self) -> tuple[OpenPosition, ...]:
        return tuple(
            OpenPosition(exchange, p.quantity, p.average_price)
            for exchange, p in sorted(self._positions.items())
            if p.quantity != ZERO and p.average_price is not None
        )


class SymbolLedger:
    """One symbol's fills, fed in the engine's order, reduced to the report of `year`.

    Constant memory apart from the reported year's own lines: earlier years are kept as a
    running holding (moving-average) or as per-year totals (total-average)."""

    def __init__(
        self, symbol: str, year: int, method: Method | str, carried: Holding | None = None
    ) -> None:
        self.symbol = symbol
        self.year = year
        self.method = Method.parse(method)
        self.margin = is_margin(symbol)
        self._start = carried or Holding()
        self._quantity = self._start.quantity  # spot quantity held (method independent)
        self._cost = self._start.cost  # moving-average cost of it
        self._carried_in: Holding | None = None  # moving-average: holding at 1 January
        self._flows: dict[int, _YearFlows] = {}  # total-average: years before `year`
        self._shorts = _ShortBook(symbol)
        self._trades = 0
        self._acquisitions: list[Acquisition] = []
        self._disposals: list[_PendingDisposal] = []
        self._closings: list[Closing] = []

    def add(self, fill: TaxFill) -> None:
        if fill.symbol != self.symbol:
            raise ValueError(f"fill of {fill.symbol} given to the ledger of {self.symbol}")
        year = jst_year(fill.time)
        if year > self.year:
            return  # after the reported year: changes nothing in it
        if year == self.year:
            self._trades += 1
            if self._carried_in is None:
                self._carried_in = Holding(self._quantity, self._cost)
        if self.margin:
            closing = self._shorts.apply(fill, fill.size, fill.fee)
            if closing is not None and year == self.year:
                self._closings.append(closing)
            return
        with money_context():
            if fill.side is Side.BUY:
                # A short sale (backtests only) is covered first; the rest is acquired.
                short = -self._shorts.quantity(fill.exchange)
                to_short = min(fill.size, short) if short > ZERO else ZERO
            else:
                # What is held is disposed of; a sale beyond it is a short sale.
                to_short = fill.size - min(fill.size, self._quantity)
            spot = fill.size - to_short
            spot_fee = fill.fee * spot / fill.size if to_short else fill.fee
            if to_short:
                closing = self._shorts.apply(fill, to_short, fill.fee - spot_fee)
                if closing is not None and year == self.year:
                    self._closings.append(closing)
            if spot == ZERO:
                return
            if fill.side is Side.BUY:
                bought = Acquisition(fill.time, fill.exchange, spot, fill.price, spot_fee)
                self._acquire(year, bought)
            else:
                self._dispose(year, fill, spot, spot_fee)

    def _acquire(self, year: int, acquisition: Acquisition) -> None:
        self._quantity += acquisition.quantity
        self._cost += acquisition.cost
        if year == self.year:
            self._acquisitions.append(acquisition)
        else:
            flows = self._flows.setdefault(year, _YearFlows())
            flows.acquired += acquisition.quantity
            flows.acquired_cost += acquisition.cost

    def _dispose(self, year: int, fill: TaxFill, quantity: Decimal, fee: Decimal) -> None:
        # Moving-average cost (the whole cost when everything goes, so nothing is left over).
        whole = quantity == self._quantity
        cost = self._cost if whole else self._cost * quantity / self._quantity
        unit = self._cost / self._quantity
        self._quantity -= quantity
        self._cost -= cost
        if year == self.year:
            self._disposals.append(
                _PendingDisposal(fill.time, fill.exchange, quantity, fill.price, fee, unit, cost)
            )
        else:
            self._flows.setdefault(year, _YearFlows()).disposed += quantity

    def report(self) -> SymbolReport:
        if self.margin:
            return self._report(Holding(), (), Holding(), None)
        if self.method is Method.MOVING_AVERAGE:
            carried_in = (
                self._carried_in
                if self._carried_in is not None
                else Holding(self._quantity, self._cost)
            )
            disposals = tuple(d.moving_average() for d in self._disposals)
            unit = None
            return self._report(carried_in, disposals, Holding(self._quantity, self._cost), unit)
        return self._total_average()

    def _total_average(self) -> SymbolReport:
        with money_context():
            held = self._start
            for year in sorted(self._flows):
                flows = self._flows[year]
                held = _year_end(held, flows.acquired, flows.acquired_cost, flows.disposed)
            carried_in = held
            acquired = sum((a.quantity for a in self._acquisitions), ZERO)
            acquired_cost = sum((a.cost for a in self._acquisitions), ZERO)
            disposed = sum((d.quantity for d in self._disposals), ZERO)
            pool = carried_in.quantity + acquired
            unit = (carried_in.cost + acquired_cost) / pool if pool != ZERO else None
            disposals = tuple(d.at_unit_cost(unit) for d in self._disposals if unit is not None)
            carried_out = _year_end(carried_in, acquired, acquired_cost, disposed)
        return self._report(carried_in, disposals, carried_out, unit)

    def _report(
        self,
        carried_in: Holding,
        disposals: tuple[Disposal, ...],
        carried_out: Holding,
        unit: Decimal | None,
    ) -> SymbolReport:
        return SymbolReport(
            symbol=self.symbol,
            kind="margin" if self.margin else "spot",
            method=self.method,
            year=self.year,
            trades=self._trades,
            carried_in=carried_in,
            acquisitions=tuple(self._acquisitions),
            disposals=disposals,
            closings=tuple(self._closings),
            carried_out=carried_out,
            open_positions=self._shorts.open_positions(),
            unit_cost=unit,
        )


@dataclass(frozen=True, slots=True)
class _PendingDisposal:
    """A disposal of the reported year whose cost depends on the method."""

    time: datetime
    exchange: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    moving_unit: Decimal
    moving_cost: Decimal

    def moving_average(self) -> Disposal:
        return Disposal(
            self.time,
            self.exchange,
            self.quantity,
            self.price,
            self.fee,
            self.moving_unit,
            self.moving_cost,
        )

    def at_unit_cost(self, unit: Decimal) -> Disposal:
        with money_context():
            cost = self.quantity * unit
        return Disposal(self.time, self.exchange, self.quantity, self.price, self.fee, unit, cost)


def _year_end(
    carried: Holding, acquired: Decimal, acquired_cost: Decimal, disposed: Decimal
) -> Holding:
    """Total-average: the holding at the end of a year, valued at that year's unit cost."""
    with money_context():
        pool = carried.quantity + acquired
        pool_cost = carried.cost + acquired_cost
        left = pool - disposed
        if left == ZERO:
            return Holding()
        if disposed == ZERO:
            return Holding(pool, pool_cost)
        return Holding(left, left * (pool_cost / pool))


class TaxBook:
    """All symbols' ledgers for one year and method; fills are fed in the engine's order."""

    def __init__(self, year: int, method: Method | str) -> None:
        self.year = year
        self.method = Method.parse(method)
        self._ledgers: dict[str, SymbolLedger] = {}

    def add(self, fill: TaxFill) -> None:
        ledger = self._ledgers.get(fill.symbol)
        if ledger is None:
            ledger = SymbolLedger(fill.symbol, self.year, self.method)
            self._ledgers[fill.symbol] = ledger
        ledger.add(fill)

    def report(self) -> TaxReport:
        reports = []
        for symbol in sorted(self._ledgers):
            report = self._ledgers[symbol].report()
            if report.trades or report.carried_out.quantity or report.open_positions:
                reports.append(report)
        return TaxReport(self.year, self.method, tuple(reports))


def moving_average(
    fills: Iterable[TaxFill], year: int, carried: Holding | None = None
) -> SymbolReport:
    """One symbol's `year` by the moving-average method; `carried` is held before the
    first fill (e.g. bought before the engine's log begins)."""
    return _symbol_report(fills, year, Method.MOVING_AVERAGE, carried)


def total_average(
    fills: Iterable[TaxFill], year: int, carried: Holding | None = None
) -> SymbolReport:
    """One symbol's `year` by the total-average method; `carried` is held before the
    first fill, at the start of the first fill's year."""
    return _symbol_report(fills, year, Method.TOTAL_AVERAGE, carried)


def _symbol_report(
    fills: Iterable[TaxFill], year: int, method: Method, carried: Holding | None
) -> SymbolReport:
    ledger: SymbolLedger | None = None
    for fill in fills:
        if ledger is None:
            ledger = SymbolLedger(fill.symbol, year, method, carried)
        ledger.add(fill)
    if ledger is None:
        raise ValueError("no fills: the symbol is unknown")
    return ledger.report()


def tax_report(fills: Iterable[TaxFill], year: int, method: Method | str) -> TaxReport:
    """Every symbol's `year` by `method` (margin symbols: gains on closing)."""
    book = TaxBook(year, method)
    for fill in fills:
        book.add(fill)
    return book.report()
