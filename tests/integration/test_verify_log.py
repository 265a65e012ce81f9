"""`trading-engine verify-log` catches a stored event changed behind the engine's back.

The events tables refuse UPDATE and DELETE by trigger; these tests do what only a superuser
(PostgreSQL) or the file's owner (SQLite) can: switch the triggers off, edit the stored
bytes, switch them back on. The engine itself sees nothing wrong; the hash chain does.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from support.cli import CliResult, run_cli
from trading_engine.adapters.eventstore.application import EventSourcedStore
from trading_engine.adapters.eventstore.postgres import postgres_event_store
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.domain.models import Execution
from trading_engine.domain.order import Order
from trading_engine.domain.position import Position

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def record_orders(store: EventSourcedStore, count: int) -> None:
    """`count` orders, each submitted, accepted and filled with its position: 4 events per
    order after the position's first (1 + 4 * count events in all)."""
    position = store.find_position("gmo", "BTC_JPY") or Position.open_book("gmo", "BTC_JPY", at=T0)
    for n in range(count):
        order = Order.submit(
            signal_id=f"sig-{n}-{os.urandom(4).hex()}",
            exchange="gmo",
            symbol="BTC_JPY",
            side="BUY",
            order_type="LIMIT",
            size=Decimal("0.01"),
            price=Decimal("15000000"),
            at=T0,
        )
        store.save(order)
        order.accept(f"X-{n}", at=T0)
        store.save(order)
        execution = Execution(
            f"e-{n}", "BUY", Decimal("15000000"), Decimal("0.01"), Decimal("1"), T0
        )
        order.fill(execution, at=T0)
        position.apply_fill(
            order_id=order.id, exchange="gmo", symbol="BTC_JPY", execution=execution
        )
        store.save(order, position)


@pytest.fixture(autouse=True)
def _own_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs the command from a directory of its own: no `.env` of the checkout."""
    monkeypatch.chdir(tmp_path)


def verify(database_url: str, *extra: str) -> CliResult:
    return run_cli("verify-log", *extra, cwd=Path.cwd(), env={"DATABASE_URL": database_url})


def verify_json(database_url: str) -> tuple[int, dict]:
    result = verify(database_url, "--json")
    return result.returncode, json.loads(result.stdout)


# ----- PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture
def pg_store_url(pg_url: str, pg_schema: str) -> str:
    store = postgres_event_store(pg_url, schema=pg_schema)
    record_orders(store, 5)  # positions 1..21
    store.close()
    return f"{pg_url}?schema={pg_schema}"


def pg_superuser(pg_url: str, pg_schema: str, *statements: str) -> None:
    """Run `statements` on the events table with every trigger off, as a superuser could."""
    with psycopg.connect(pg_url, autocommit=True) as conn, conn.transaction():
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(pg_schema)))
        conn.execute("SET LOCAL session_replication_role = replica")  # triggers off
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def pg_event(pg_url: str, pg_schema: str, position: int) -> tuple[str, int, str]:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            sql.SQL(
                "SELECT originator_id::text, originator_version, topic FROM {} "
                "WHERE notification_id = %s"
            ).format(sql.Identifier(pg_schema, "ledger_events")),
            (position,),
        ).fetchone()
    assert row is not None
    return row


@pytest.mark.postgres
def test_untouched_postgres_log_verifies_and_prints_the_head(
    pg_store_url: str, pg_url: str, pg_schema: str
) -> None:
    result = verify(pg_store_url)
    assert result.returncode == 0, result.stderr
    store = postgres_event_store(pg_url, schema=pg_schema)
    head = store.chain_head()
    store.close()
    assert head is not None
    assert head[0] == 21
    assert "21 events verified" in result.stdout
    assert f"chain head: position 21 sha256 {head[1]}" in result.stdout


@pytest.mark.postgres
def test_one_changed_byte_in_postgres_is_named(
    pg_store_url: str, pg_url: str, pg_schema: str
) -> None:
    aggregate_id, version, topic = pg_event(pg_url, pg_schema, 9)
    # flip the lowest bit of byte 20 of event 9's state: still valid-looking JSON or not,
    # the engine would load it without complaint
    pg_superuser(
        pg_url,
        pg_schema,
        "UPDATE ledger_events SET state = set_byte(state, 20, get_byte(state, 20) # 1) "
        "WHERE notification_id = 9",
    )
    delete = sql.SQL("DELETE FROM {} WHERE notification_id = 9").format(
        sql.Identifier(pg_schema, "ledger_events")
    )
    with (  # the triggers are back on: the table refuses again
        psycopg.connect(pg_url) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
    ):
        conn.execute(delete)

    result = verify(pg_store_url)
    assert result.returncode == 1, result.stdout
    assert "does NOT verify at position 9: state changed" in result.stderr
    assert f"aggregate {aggregate_id} version {version} topic {topic}" in result.stderr
    assert "the 8 hashed events before it verify, up to position 8" in result.stderr

    code, report = verify_json(pg_store_url)
    assert code == 1
    assert report["ok"] is False
    assert (report["first_mismatch"], report["checked"]) == (9, 8)
    assert report["head"][0] == 8
    assert (report["aggregate_id"], report["version"]) == (aggregate_id, version)


@pytest.mark.postgres
def test_an_event_deleted_in_the_middle_of_postgres_is_caught(
    pg_store_url: str, pg_url: str, pg_schema: str
) -> None:
    pg_superuser(pg_url, pg_schema, "DELETE FROM ledger_events WHERE notification_id = 12")
    code, report = verify_json(pg_store_url)
    assert code == 1
    assert (report["first_mismatch"], report["checked"]) == (12, 11)
    assert report["reason"].startswith("event missing")

    # the careful superuser removes the event's link as well: the next link still points at it
    pg_superuser(pg_url, pg_schema, "DELETE FROM ledger_events_chain WHERE notification_id = 12")
    code, report = verify_json(pg_store_url)
    assert code == 1
    assert (report["first_mismatch"], report["checked"]) == (13, 11)
    assert "follows position 12, which is gone" in report["reason"]


@pytest.mark.postgres
def test_an_event_inserted_without_a_link_is_caught(
    pg_store_url: str, pg_url: str, pg_schema: str
) -> None:
    pg_superuser(
        pg_url,
        pg_schema,
        "INSERT INTO ledger_events (originator_id, originator_version, topic, state) "
        "SELECT originator_id, 99, topic, state FROM ledger_events WHERE notification_id = 2",
    )
    code, report = verify_json(pg_store_url)
    assert code == 1
    assert (report["first_mismatch"], report["version"]) == (22, 99)
    assert report["reason"].startswith("hash missing")


@pytest.mark.postgres
def test_a_store_from_before_the_chain_verifies_from_where_the_chain_starts(
    pg_url: str, pg_schema: str
) -> None:
    store = postgres_event_store(pg_url, schema=pg_schema)
    # as the store was before issue 7: no trigger linking events
    pg_superuser(pg_url, pg_schema, "DROP TRIGGER ledger_events_chain_link ON ledger_events")
    record_orders(store, 2)  # positions 1..9, unhashed
    store.close()
    store = postgres_event_store(pg_url, schema=pg_schema)  # start-up puts the trigger back
    record_orders(store, 1)  # positions 10..13 (the position exists: 4 events)
    store.close()

    url = f"{pg_url}?schema={pg_schema}"
    result = verify(url)
    assert result.returncode == 0, result.stderr
    assert "chain starts at position 10: the 9 events before it" in result.stdout
    assert "4 events verified" in result.stdout
    code, report = verify_json(url)
    assert (code, report["start"], report["unhashed"], report["checked"]) == (0, 10, 9, 4)

    pg_superuser(
        pg_url,
        pg_schema,
        "UPDATE ledger_events SET topic = topic || ' ' WHERE notification_id = 11",
    )
    code, report = verify_json(url)
    assert (code, report["first_mismatch"]) == (1, 11)


# ----- SQLite -------------------------------------------------------------------------------


def sqlite_owner(path: Path, *statements: str) -> None:
    """Drop the append-only triggers, run `statements`, put the triggers back."""
    connection = sqlite3.connect(path)
    try:
        triggers = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
        ).fetchall()
        assert {name for name, _ in triggers} >= {
            "stored_events_no_update",
            "stored_events_no_delete",
        }
        for name, _ in triggers:
            connection.execute(f"DROP TRIGGER {name}")
        for statement in statements:
            connection.execute(statement)
        for _, create in triggers:
            connection.execute(create)
        connection.commit()
    finally:
        connection.close()


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "engine.sqlite3"
    store = sqlite_event_store(path)
    record_orders(store, 4)  # positions 1..17
    store.close()
    return path


def test_untouched_sqlite_log_verifies(sqlite_file: Path) -> None:
    result = verify(f"sqlite:///{sqlite_file}")
    assert result.returncode == 0, result.stderr
    assert "17 events verified" in result.stdout
    assert "chain head: position 17 sha256 " in result.stdout


def test_one_changed_byte_in_sqlite_is_named(sqlite_file: Path) -> None:
    connection = sqlite3.connect(sqlite_file)
    state, aggregate_hex = connection.execute(
        "SELECT state, originator_id FROM stored_events WHERE rowid = 6"
    ).fetchone()
    connection.close()
    changed = state.replace(b"15000000", b"15000001", 1)
    assert changed != state
    sqlite_owner(
        sqlite_file, f"UPDATE stored_events SET state = x'{changed.hex()}' WHERE rowid = 6"
    )
    connection = sqlite3.connect(sqlite_file)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):  # the triggers are back
            connection.execute("UPDATE stored_events SET topic = 'x' WHERE rowid = 6")
    finally:
        connection.close()

    result = verify(f"sqlite:///{sqlite_file}")
    assert result.returncode == 1, result.stdout
    assert "does NOT verify at position 6: state changed" in result.stderr
    code, report = verify_json(f"sqlite:///{sqlite_file}")
    assert (code, report["first_mismatch"], report["checked"]) == (1, 6, 5)
    assert report["aggregate_id"].replace("-", "") == aggregate_hex


def test_an_event_deleted_in_the_middle_of_sqlite_is_caught(sqlite_file: Path) -> None:
    sqlite_owner(
        sqlite_file,
        "DELETE FROM stored_events WHERE rowid = 7",
        "DELETE FROM stored_events_chain WHERE notification_id = 7",
    )
    code, report = verify_json(f"sqlite:///{sqlite_file}")
    assert (code, report["first_mismatch"], report["checked"]) == (1, 8, 6)
    assert "follows position 7, which is gone" in report["reason"]
