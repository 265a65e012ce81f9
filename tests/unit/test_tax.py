"""Realized gains for the tax return: worked examples, computed by hand in the comments.

Times are given in UTC; JST is UTC+9, so 2025-12-31T14:30Z is 23:30 on 31 December 2025 in
Japan and 2025-12-31T15:30Z is 00:30 on 1 January 2026.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.models import Execution
from trading_engine.domain.position import Position
from trading_engine.domain.tax import moving_average, tax_report, total_average
from trading_engine.domain.tax_report import Holding, Method, TaxFill, jst_year

D = Decimal


def fill(when: str, side: str, price, size, fee=0, symbol="BTC", exchange="gmo") -> TaxFill:
    return TaxFill(
        time=datetime.fromisoformat(when).replace(tzinfo=UTC),
        exchange=exchange,
        symbol=symbol,
        side=side,
        price=D(str(price)),
        size=D(str(size)),
        fee=D(str(fee)),
    )


# ----- the same fills, two methods ------------------------------------------------------------

SAME_YEAR = [
    fill("2026-01-10T00:00", "BUY", 100, 1, 1),  # cost 100 + 1 = 101
    fill("2026-02-10T00:00", "BUY", 200, 1, 1),  # cost 200 + 1 = 201
    fill("2026-03-10T00:00", "SELL", 300, 1, 1),  # proceeds 300, fee 1
    fill("2026-04-10T00:00", "BUY", 250, 2, 2),  # cost 500 + 2 = 502
]


def test_moving_average_unit_cost_moves_with_each_acquisition():
    # held 1 @ 101; + 1 for 201 → 2 for 302, unit 151.
    # sale of 1: cost 151, gain = 300 − 1 − 151 = 148; left 1 for 151.
    # + 2 for 502 → carried out 3 for 653.
    report = moving_average(SAME_YEAR, 2026)
    assert [a.cost for a in report.acquisitions] == [D(101), D(201), D(502)]
    (sale,) = report.disposals
    assert (sale.unit_cost, sale.cost, sale.proceeds, sale.fee) == (D(151), D(151), D(300), D(1))
    assert sale.gain == D(148)
    assert report.realized_gain == D(148)
    assert (report.proceeds, report.cost, report.fees) == (D(300), D(151), D(1))
    assert report.carried_out == Holding(D(3), D(653))
    assert report.trades == 4


def test_total_average_uses_one_unit_cost_for_the_year():
    # All the year's acquisitions: 101 + 201 + 502 = 804 for 1 + 1 + 2 = 4 → unit 201,
    # even for the sale made before the last purchase.
    # sale of 1: cost 201, gain = 300 − 1 − 201 = 98; carried out 3 × 201 = 603.
    report = total_average(SAME_YEAR, 2026)
    assert report.unit_cost == D(201)
    (sale,) = report.disposals
    assert (sale.cost, sale.gain) == (D(201), D(98))
    assert report.realized_gain == D(98)
    assert (report.proceeds, report.cost, report.fees) == (D(300), D(201), D(1))
    assert report.carried_out == Holding(D(3), D(603))


# ----- the year boundary ----------------------------------------------------------------------

BOUNDARY = [
    fill("2025-03-01T00:00", "BUY", 100, 2, 2),  # 2 for 202, unit 101
    fill("2025-12-31T14:30", "SELL", 150, 1, 1),  # 23:30 JST on 31 Dec: a 2025 sale
    fill("2025-12-31T15:30", "SELL", 160, 1, 1),  # 00:30 JST on 1 Jan: a 2026 sale
]


def test_jst_years():
    assert jst_year(BOUNDARY[1].time) == 2025
    assert jst_year(BOUNDARY[2].time) == 2026
    assert jst_year(datetime(2025, 12, 31, 16, 0, tzinfo=UTC)) == 2026


@pytest.mark.parametrize("compute", [moving_average, total_average])
def test_a_sale_at_half_past_midnight_jst_belongs_to_the_new_year(compute):
    # One acquisition only, so both methods agree: unit 202 / 2 = 101.
    # 2025: the 23:30 sale: 150 − 1 − 101 = 48; 1 carried out at 101.
    # 2026: the 00:30 sale: 160 − 1 − 101 = 58; nothing left.
    first = compute(BOUNDARY, 2025)
    assert first.trades == 2
    assert [d.gain for d in first.disposals] == [D(48)]
    assert first.carried_out == Holding(D(1), D(101))
    second = compute(BOUNDARY, 2026)
    assert second.trades == 1
    assert second.carried_in == Holding(D(1), D(101))
    assert [d.gain for d in second.disposals] == [D(58)]
    assert second.carried_out == Holding()


# ----- a holding carried from one year into the next ------------------------------------------

ACROSS = [
    fill("2025-02-01T00:00", "BUY", 100, 1),
    fill("2025-05-01T00:00", "SELL", 130, 1),
    fill("2025-08-01T00:00", "BUY", 200, 1),  # still held on 31 December 2025
    fill("2026-03-01T00:00", "BUY", 300, 1),
    fill("2026-06-01T00:00", "SELL", 400, 1),  # closes what was bought in 2025 (on average)
]


def test_moving_average_carries_the_running_cost_into_the_next_year():
    # 2025: buy 1 @ 100; sale at 130: cost 100, gain 30; buy 1 @ 200 → carried 1 for 200.
    # 2026: 1 for 200 + 1 for 300 → 2 for 500, unit 250; sale at 400: gain 150;
    #       carried out 1 for 250.
    assert moving_average(ACROSS, 2025).realized_gain == D(30)
    assert moving_average(ACROSS, 2025).carried_out == Holding(D(1), D(200))
    report = moving_average(ACROSS, 2026)
    assert report.carried_in == Holding(D(1), D(200))
    assert [d.unit_cost for d in report.disposals] == [D(250)]
    assert report.realized_gain == D(150)
    assert report.carried_out == Holding(D(1), D(250))


def test_total_average_carries_the_year_end_valuation_into_the_next_year():
    # 2025: acquisitions 100 + 200 for 2 → unit 150; sale at 130: cost 150, gain −20;
    #       carried 1 × 150 = 150 (not the 200 the moving average keeps).
    # 2026: (150 + 300) / (1 + 1) = 225; sale at 400: gain 175; carried out 1 × 225.
    first = total_average(ACROSS, 2025)
    assert (first.unit_cost, first.realized_gain) == (D(150), D(-20))
    assert first.carried_out == Holding(D(1), D(150))
    report = total_average(ACROSS, 2026)
    assert report.carried_in == Holding(D(1), D(150))
    assert report.unit_cost == D(225)
    assert report.realized_gain == D(175)
    assert report.carried_out == Holding(D(1), D(225))


def test_a_holding_from_before_the_log_enters_with_its_cost():
    # 1 for 150 held before the first fill; 2026: + 1 for 300.
    # moving: 2 for 450, unit 225; sale at 400: 175.  total: the same here (one purchase).
    fills = ACROSS[3:]
    assert moving_average(fills, 2026, Holding(D(1), D(150))).realized_gain == D(175)
    assert total_average(fills, 2026, Holding(D(1), D(150))).realized_gain == D(175)


# ----- margin (GMO leverage, `_JPY`): taxed when closed -----------------------------------------

MARGIN = [
    fill("2025-12-20T00:00", "BUY", 1000, 2, 4, symbol="BTC_JPY"),  # long 2, entry 2000, fees 4
    fill("2025-12-31T14:30", "SELL", 1100, 1, 1, symbol="BTC_JPY"),  # 2025 (23:30 JST)
    fill("2026-01-10T00:00", "SELL", 1200, 3, 3, symbol="BTC_JPY"),  # closes 1, opens short 2
    fill("2026-02-01T00:00", "BUY", 1000, 1, 1, symbol="BTC_JPY"),  # covers 1 of the short
]


def test_margin_gains_are_realized_on_the_closing_fill_long_and_short():
    # 2025: sell 1 of the long 2: (1100 − 2000 × 1/2) − 4 × 1/2 − 1 = 100 − 2 − 1 = 97;
    #       open at year end: long 1 @ 1000.
    first = tax_report(MARGIN, 2025, Method.TOTAL_AVERAGE).symbols[0]
    assert first.kind == "margin"
    assert [c.gain for c in first.closings] == [D(97)]
    assert [(p.quantity, p.average_price) for p in first.open_positions] == [(D(1), D(1000))]
    # 2026: sell 3 @ 1200, fee 3: closes the long 1 (its fee share 3 × 1/3 = 1):
    #       (1200 − 1000) − 2 − 1 = 197 (proceeds 1200, cost 1000, fees 3);
    #       the other 2 open a short @ 1200 with entry fees 2.
    #       buy 1 @ 1000, fee 1: covers 1: (1000 − 2400 × 1/2) × −1 − 2 × 1/2 − 1 = 198
    #       (proceeds 1200 from the short sale, cost 1000, fees 2).
    #       total 395; open at year end: short 1 @ 1200.
    report = tax_report(MARGIN, 2026, "moving-average").symbols[0]
    assert [(c.proceeds, c.cost, c.fees, c.gain) for c in report.closings] == [
        (D(1200), D(1000), D(3), D(197)),
        (D(1200), D(1000), D(2), D(198)),
    ]
    assert (report.proceeds, report.cost, report.fees, report.realized_gain) == (
        D(2400),
        D(2000),
        D(5),
        D(395),
    )
    assert [(p.quantity, p.average_price) for p in report.open_positions] == [(D(-1), D(1200))]
    assert report.acquisitions == ()
    assert report.disposals == ()
    assert report.carried_out == Holding()


def test_margin_gains_are_the_position_aggregates_realized_pnl():
    position = Position.open_book("gmo", "BTC_JPY", at=MARGIN[0].time)
    for n, f in enumerate(MARGIN):
        position.apply_fill(
            order_id=f"o{n}",
            exchange="gmo",
            symbol="BTC_JPY",
            execution=Execution(f"e{n}", f.side, f.price, f.size, f.fee, f.time),
        )
    total = sum(
        (tax_report(MARGIN, year, "total-average").total.realized_gain for year in (2025, 2026)),
        D(0),
    )
    assert total == position.realized_pnl == D(97 + 395)


def test_a_spot_sale_beyond_the_holding_is_a_short_sale_taxed_when_covered():
    # Backtests may short a spot symbol. Hold 1 for 100; sell 2 @ 150, fee 2: 1 disposed
    # (fee 1): 150 − 1 − 100 = 49; 1 sold short (fee 1). Buy 1 @ 120, fee 1, covers it:
    # (150 − 120) − 1 − 1 = 28. Total 77, nothing left.
    fills = [
        fill("2026-01-01T00:00", "BUY", 100, 1, symbol="GOOG", exchange="backtest"),
        fill("2026-01-02T00:00", "SELL", 150, 2, 2, symbol="GOOG", exchange="backtest"),
        fill("2026-01-03T00:00", "BUY", 120, 1, 1, symbol="GOOG", exchange="backtest"),
    ]
    report = moving_average(fills, 2026)
    assert [d.gain for d in report.disposals] == [D(49)]
    assert [c.gain for c in report.closings] == [D(28)]
    assert report.acquisitions[0].quantity == D(1)  # the cover is not an acquisition
    assert report.realized_gain == D(77)
    assert report.carried_out == Holding()
    assert report.open_positions == ()


# ----- several symbols, empty years, bad input ------------------------------------------------


def test_the_report_totals_every_symbol():
    # BTC (moving): 148; BTC_JPY 2026: 395 → 543.
    fills = SAME_YEAR + MARGIN
    report = tax_report(fills, 2026, Method.MOVING_AVERAGE)
    assert [s.symbol for s in report.symbols] == ["BTC", "BTC_JPY"]
    total = report.total
    assert total.realized_gain == D(543)
    assert total.realized_gain == total.proceeds - total.cost - total.fees


def test_a_year_without_trades_is_empty():
    report = tax_report(ACROSS, 2024, "moving-average")
    assert report.empty
    assert report.symbols == ()
    assert report.total.realized_gain == D(0)
    assert tax_report([], 2026, "total-average").empty


def test_a_year_without_trades_still_lists_the_holding_carried_through_it():
    report = tax_report(ACROSS, 2027, "moving-average")
    assert report.empty
    (btc,) = report.symbols
    assert btc.carried_in == btc.carried_out == Holding(D(1), D(250))
    assert btc.realized_gain == D(0)
    # total-average: 2027 has no acquisitions, unit 225 / 1 → nothing changes.
    (btc,) = tax_report(ACROSS, 2027, "total-average").symbols
    assert btc.carried_out == Holding(D(1), D(225))


def test_an_unknown_method_is_refused():
    with pytest.raises(InvalidValue, match="method"):
        Method.parse("fifo")
    assert Method.parse("total-average") is Method.TOTAL_AVERAGE


def test_naive_times_are_refused():
    with pytest.raises(InvalidValue):
        TaxFill(datetime(2026, 1, 1), "gmo", "BTC", "BUY", D(1), D(1), D(0))
