"""One contract for the projection stores (PostgreSQL, SQLite): rows and position move
together or not at all; a stale writer is refused; staging copies serve the rebuild while
the live tables keep serving, and the swap replaces them whole."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest

from support.projection_rig import Rig
from trading_engine.ports.projections import PositionMoved, ProjectionStoreError, RowChange


@pytest.fixture
def rig(projection_rig: Rig) -> Rig:
    """On SQLite, then on PostgreSQL (tests/conftest.py)."""
    return projection_rig


def position_row(position_id: int, symbol: str, size: str, **extra: object) -> RowChange:
    return RowChange(
        table="positions",
        key=("exchange", "symbol"),
        insert_only=frozenset({"id"}),
        values={
            "id": position_id,
            "exchange": "gmo",
            "symbol": symbol,
            "side": "LONG",
            "size": Decimal(size),
            "average_price": Decimal("5000000.123456789"),
            "realized_pnl": Decimal(0),
            "fees_paid": Decimal(0),
            "fill_count": 1,
            "closed_trips": 0,
            "last_position": position_id,
            **extra,
        },
    )


def sizes(rig: Rig, table: str = "positions") -> dict[str, Decimal]:
    return {r["symbol"]: Decimal(str(r["size"])) for r in rig.store.rows(table)}


def test_rows_and_position_commit_together(rig: Rig) -> None:
    store = rig.store
    assert store.position("positions") == 0
    store.commit("positions", [position_row(3, "BTC_JPY", "0.01")], expected=0, position=3)
    store.commit("positions", [position_row(9, "BTC_JPY", "0.02")], expected=3, position=9)
    assert store.position("positions") == 9
    rows = store.rows("positions")
    assert [(r["id"], r["last_position"]) for r in rows] == [(3, 9)]  # the id is kept
    assert Decimal(str(rows[0]["size"])) == Decimal("0.02")
    # DECIMAL(20, 8) on both backends: 8 places, half away from zero
    assert Decimal(str(rows[0]["average_price"])) == Decimal("5000000.12345679")


def test_a_stale_writer_is_refused_and_changes_nothing(rig: Rig) -> None:
    rig.store.commit("positions", [position_row(3, "BTC_JPY", "0.01")], expected=0, position=3)
    with pytest.raises(PositionMoved):
        rig.store.commit("positions", [position_row(4, "ETH_JPY", "1")], expected=0, position=4)
    assert rig.store.position("positions") == 3
    assert sizes(rig) == {"BTC_JPY": Decimal("0.01")}


def test_a_change_that_cannot_be_applied_applies_nothing(rig: Rig) -> None:
    good = position_row(3, "BTC_JPY", "0.01")
    bad = position_row(4, "ETH_JPY", "1", side=None)  # side is NOT NULL
    with pytest.raises(ProjectionStoreError):
        rig.store.commit("positions", [good, bad], expected=0, position=4)
    assert rig.store.position("positions") == 0
    assert sizes(rig) == {}


def test_the_seeds_not_null_columns_hold(rig: Rig) -> None:
    order_id = uuid4()
    order = RowChange(
        "orders",
        ("engine_order_id",),
        {
            "id": 1,
            "exchange": "gmo",
            "symbol": "BTC_JPY",
            "order_id": "x1",
            "side": "BUY",
            "order_type": "MARKET",
            "size": Decimal("0.01"),
            "status": "FILLED",
            "timestamp": None,
            "engine_order_id": order_id,
            "signal_key": "s1",
            "time_in_force": "FAK",
            "settle": "OPEN",
            "last_position": 1,
        },
    )
    # an explicit NULL timestamp: the seed's NOT NULL holds (projections always write one)
    with pytest.raises(ProjectionStoreError):
        rig.store.commit("orders", [order], expected=0, position=1)


def test_staging_serves_the_rebuild_and_the_swap_replaces_the_tables(rig: Rig) -> None:
    store = rig.store
    store.commit("positions", [position_row(3, "BTC_JPY", "0.01")], expected=0, position=3)
    store.start_staging("positions", ["positions"])
    store.commit(
        "positions", [position_row(3, "BTC_JPY", "0.05")], expected=0, position=3, staging=True
    )
    assert sizes(rig) == {"BTC_JPY": Decimal("0.01")}  # the live table still serves
    seen: list[int] = []

    def catch_up(staged: int) -> tuple[list[RowChange], int]:
        seen.append(staged)
        return [position_row(7, "ETH_JPY", "2")], 7

    assert store.swap("positions", ["positions"], catch_up) == 7
    assert seen == [3]
    assert sizes(rig) == {"BTC_JPY": Decimal("0.05"), "ETH_JPY": Decimal("2")}
    assert store.position("positions") == 7
    # the swapped-in table is a full table: keys and the next commit work as before
    store.commit("positions", [position_row(8, "ETH_JPY", "3")], expected=7, position=8)
    assert sizes(rig)["ETH_JPY"] == Decimal("3")


def test_a_failed_swap_leaves_the_live_tables(rig: Rig) -> None:
    store = rig.store
    store.commit("positions", [position_row(3, "BTC_JPY", "0.01")], expected=0, position=3)
    store.start_staging("positions", ["positions"])

    def broken(staged: int) -> tuple[list[RowChange], int]:
        return [position_row(4, "ETH_JPY", "1", side=None)], 4

    with pytest.raises(ProjectionStoreError):
        store.swap("positions", ["positions"], broken)
    assert sizes(rig) == {"BTC_JPY": Decimal("0.01")}
    assert store.position("positions") == 3
