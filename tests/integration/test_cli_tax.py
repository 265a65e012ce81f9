"""`trading-engine export tax` as an operator runs it, on a SQLite event store written by the
real order use cases. The expected figures are the hand-computed ones of tests/unit/test_tax.py
(and the domain computation on the same fills)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from support.cli import CliResult
from support.cli import run_cli as cli
from trading_engine.adapters.clocks.manual import ManualClock
from trading_engine.adapters.eventstore.postgres import postgres_event_store
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.app.execution.orders import OrderService
from trading_engine.domain.models import Execution, Signal
from trading_engine.domain.tax import tax_report
from trading_engine.domain.tax_report import TaxFill

D = Decimal

# (UTC time, symbol, side, price, size, fee) in the order the engine records them.
FILLS = [
    # BTC (spot): bought in 2025, partly sold; the rest carried into 2026.
    ("2025-02-01T00:00", "BTC", "BUY", 100, 1, 0),
    ("2025-05-01T00:00", "BTC", "SELL", 130, 1, 0),
    ("2025-08-01T00:00", "BTC", "BUY", 200, 1, 0),
    # BTC_JPY (margin): a long, partly closed on 31 Dec 23:30 JST, then flipped short.
    ("2025-12-20T00:00", "BTC_JPY", "BUY", 1000, 2, 4),
    ("2025-12-31T14:30", "BTC_JPY", "SELL", 1100, 1, 1),
    # ETH (spot): bought at 00:30 JST on 1 Jan 2026 (still 31 Dec in UTC).
    ("2025-12-31T15:30", "ETH", "BUY", 100, 1, 1),
    ("2026-01-10T00:00", "BTC_JPY", "SELL", 1200, 3, 3),
    ("2026-02-01T00:00", "BTC_JPY", "BUY", 1000, 1, 1),
    ("2026-03-01T00:00", "BTC", "BUY", 300, 1, 0),
    ("2026-06-01T00:00", "BTC", "SELL", 400, 1, 0),
    ("2026-07-01T00:00", "ETH", "SELL", 150, 1, 1),
]

# Hand-computed (see tests/unit/test_tax.py for the working):
#   BTC  2025: moving 130 − 100 = 30;      total (100+200)/2 = 150 → 130 − 150 = −20
#   BTC  2026: moving (200+300)/2 = 250 → 400 − 250 = 150;
#              total (150+300)/2 = 225 → 400 − 225 = 175
#   BTC_JPY 2025: (1100 − 1000) − 2 − 1 = 97;  2026: 197 + 198 = 395 (either method)
#   ETH  2026: 150 − 1 − (100 + 1) = 48 (either method); nothing in 2025 (JST)
EXPECTED = {
    (2025, "moving-average"): {"BTC": D(30), "BTC_JPY": D(97), "total": D(127)},
    (2025, "total-average"): {"BTC": D(-20), "BTC_JPY": D(97), "total": D(77)},
    (2026, "moving-average"): {"BTC": D(150), "BTC_JPY": D(395), "ETH": D(48), "total": D(593)},
    (2026, "total-average"): {"BTC": D(175), "BTC_JPY": D(395), "ETH": D(48), "total": D(618)},
}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def a_signal(signal_id: str, symbol: str, at: datetime) -> Signal:
    return Signal(
        signal_id=signal_id,
        exchange="gmo",
        symbol=symbol,
        strategy="rsi",
        action="enter_long",
        confidence=D(1),
        price_ref=D(100),
        timestamp=at,
        indicators={"rsi": 25.0},
        meta={},
    )


def write_log(store) -> None:
    """Each fill as its own market order: submitted, accepted, filled (the real use cases)."""
    try:
        orders = OrderService(store, ManualClock(utc(FILLS[0][0])))
        for n, (when, symbol, side, price, size, fee) in enumerate(FILLS):
            at = utc(when)
            order = orders.submit_for_signal(
                a_signal(f"sig-{n}", symbol, at),
                side=side,
                order_type="MARKET",
                size=D(size),
                at=at - timedelta(seconds=2),
            )
            orders.accept(order.id, f"GMO-{n}", at=at - timedelta(seconds=1))
            execution = Execution(f"EX-{n}", side, D(price), D(size), D(fee), at)
            orders.record_fill(order.id, execution, at=at)
    finally:
        store.close()


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("tax") / "engine.sqlite3"
    write_log(sqlite_event_store(path))
    return f"sqlite:///{path}"


def export(*args: str, database_url: str, cwd: Path) -> CliResult:
    env = {"DATABASE_URL": database_url, "COLUMNS": "200"}
    return cli("export", "tax", *args, cwd=cwd, env=env)


def domain_total(year: int, method: str) -> Decimal:
    fills = [TaxFill(utc(w), "gmo", s, side, D(p), D(q), D(f)) for w, s, side, p, q, f in FILLS]
    return tax_report(fills, year, method).total.realized_gain


@pytest.mark.parametrize(("year", "method"), list(EXPECTED))
def test_json_totals_match_the_hand_computed_figures(database, tmp_path, year, method):
    result = export("--year", str(year), "--method", method, database_url=database, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    expected = EXPECTED[(year, method)]
    gains = {s: D(v["realized_gain"]) for s, v in document["symbols"].items()}
    assert gains == {s: v for s, v in expected.items() if s != "total"}
    total = document["total"]
    assert D(total["realized_gain"]) == expected["total"] == domain_total(year, method)
    assert D(total["realized_gain"]) == D(total["proceeds"]) - D(total["cost"]) - D(total["fees"])
    for entry in document["symbols"].values():
        assert set(entry) >= {"realized_gain", "proceeds", "cost", "fees"}
    assert document["note"] is None


def test_the_same_export_from_postgresql(pg_url, pg_schema, tmp_path):
    write_log(postgres_event_store(pg_url, schema=pg_schema))
    url = f"{pg_url}?schema={pg_schema}"
    for (year, method), expected in EXPECTED.items():
        result = export("--year", str(year), "--method", method, database_url=url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert D(document["total"]["realized_gain"]) == expected["total"]
        gains = {s: D(v["realized_gain"]) for s, v in document["symbols"].items()}
        assert gains == {s: v for s, v in expected.items() if s != "total"}


def test_carried_holdings_and_open_margin_positions_at_year_end(database, tmp_path):
    result = export(
        "--year", "2025", "--method", "total-average", database_url=database, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    symbols = json.loads(result.stdout)["symbols"]
    assert "ETH" not in symbols  # its purchase was at 00:30 JST on 1 January 2026
    assert symbols["BTC"]["carried_out"] == {"quantity": "1", "cost": "150"}
    (position,) = symbols["BTC_JPY"]["open_positions"]
    assert (D(position["quantity"]), D(position["average_price"])) == (D(1), D(1000))


def test_filters_and_csv_written_atomically(database, tmp_path):
    out = tmp_path / "reports" / "tax-2026.csv"
    result = export(
        "--year",
        "2026",
        "--method",
        "moving-average",
        "--exchange",
        "gmo",
        "--symbol",
        "BTC_JPY",
        "--format",
        "csv",
        "--out",
        str(out),
        database_url=database,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "total realized gain 395" in result.stdout
    assert "open: -1 @ 1,200 on gmo" in result.stdout
    # no temporary file left; the manifest beside the CSV states the log's chain head
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, out.name + ".manifest.json"]
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(r["row"], r["symbol"], r["realized_gain"]) for r in rows] == [
        ("closing", "BTC_JPY", "197"),
        ("closing", "BTC_JPY", "198"),
        ("open_position", "BTC_JPY", ""),
        ("summary", "BTC_JPY", "395"),
        ("total", "", "395"),
    ]


def test_a_year_without_trades_says_so(database, tmp_path):
    result = export(
        "--year", "2024", "--method", "moving-average", database_url=database, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "no trades in 2024 for all symbols on all exchanges" in result.stderr
    document = json.loads(result.stdout)
    assert document["note"] == "no trades in 2024 for all symbols on all exchanges"
    assert document["symbols"] == {}
    assert document["total"]["realized_gain"] == "0"

    other = export(
        "--year",
        "2026",
        "--method",
        "total-average",
        "--exchange",
        "binance",
        database_url=database,
        cwd=tmp_path,
    )
    assert other.returncode == 0, other.stderr
    assert "no trades in 2026 for all symbols on binance" in other.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--year", "2026", "--method", "fifo"), "invalid --method 'fifo'"),
        (("--year", "26", "--method", "moving-average"), "invalid --year '26'"),
        (("--year", "2026-01", "--method", "moving-average"), "invalid --year"),
        (("--year", "1999", "--method", "moving-average"), "invalid --year '1999'"),
        (("--year", "2026", "--method", "total-average", "--format", "xml"), "invalid --format"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(tmp_path, args, message):
    missing = tmp_path / "never-created.sqlite3"
    result = export(*args, database_url=f"sqlite:///{missing}", cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not missing.exists()


def test_a_missing_sqlite_file_is_an_error_not_an_empty_store(tmp_path):
    missing = tmp_path / "nope.sqlite3"
    result = export(
        "--year",
        "2026",
        "--method",
        "moving-average",
        database_url=f"sqlite:///{missing}",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "no event store" in result.stderr
    assert not missing.exists()
