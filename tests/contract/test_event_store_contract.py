"""One event-store contract, run against every adapter: in-memory, SQLite, PostgreSQL.

Modelled on the eventsourcing library's own recorder test cases: an abstract suite with the
behaviour, one small subclass per adapter that says how to open (and poke at) that store.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from trading_engine.adapters.eventstore.application import EventSourcedStore
from trading_engine.adapters.eventstore.log_copy import append_log
from trading_engine.adapters.eventstore.memory import memory_event_store
from trading_engine.adapters.eventstore.postgres import postgres_event_store
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.domain.errors import DuplicateOrder, UnknownOrder
from trading_engine.domain.models import Execution
from trading_engine.domain.order import Order, order_id_for
from trading_engine.domain.position import Position
from trading_engine.ports.event_store import ConcurrencyConflict

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
JST = timezone(timedelta(hours=9))


def new_order(signal_id: str | None = None, **overrides: object) -> Order:
    fields: dict[str, object] = {
        "signal_id": signal_id or f"sig-{uuid.uuid4().hex}",
        "exchange": "gmo",
        "symbol": "BTC_JPY",
        "side": "BUY",
        "order_type": "LIMIT",
        "size": Decimal("0.03"),
        "price": Decimal("15000000"),
        "at": T0,
    }
    fields.update(overrides)
    return Order.submit(**fields)  # type: ignore[arg-type]


def fill(execution_id: str, size: str, price: str = "15000000", fee: str = "0") -> Execution:
    return Execution(execution_id, "BUY", Decimal(price), Decimal(size), Decimal(fee), T0)


class EventStoreContract:
    """Behaviour every event store must have. Subclasses provide `open_store`."""

    supports_raw_sql = True
    survives_reopen = True

    @pytest.fixture
    def open_store(self) -> Callable[[], EventSourcedStore]:
        raise NotImplementedError

    @pytest.fixture
    def store(self, open_store: Callable[[], EventSourcedStore]) -> Iterator[EventSourcedStore]:
        store = open_store()
        yield store
        store.close()

    def raw_execute(self, store: EventSourcedStore, statement: str) -> None:
        raise NotImplementedError

    # ----- save and load --------------------------------------------------------------------

    def test_saved_order_loads_back_equal(self, store: EventSourcedStore) -> None:
        order = new_order()
        order.accept("X-1", at=T0 + timedelta(seconds=1))
        order.fill(fill("e1", "0.01", fee="-1.5"), at=T0 + timedelta(seconds=2))
        store.save(order)
        loaded = store.get_order(order.id)
        assert loaded == order
        assert loaded.version == 3
        assert loaded.status.value == "PARTIALLY_FILLED"
        assert loaded.execution_ids == {"e1"}

    def test_position_and_order_saved_together_load_back(self, store: EventSourcedStore) -> None:
        order = new_order()
        execution = fill("e1", "0.01", fee="3")
        order.fill(execution)
        position = Position.open_book("gmo", "BTC_JPY", at=T0)
        position.apply_fill(
            order_id=order.id, exchange="gmo", symbol="BTC_JPY", execution=execution
        )
        store.save(order, position)
        loaded = store.find_position("gmo", "BTC_JPY")
        assert loaded == position
        assert loaded is not None
        assert loaded.quantity == Decimal("0.01")
        assert store.find_position("gmo", "ETH_JPY") is None

    def test_a_sole_writer_gets_the_cached_state_itself(self, store: EventSourcedStore) -> None:
        """By default each load is a copy (a change not saved stays with its caller); a
        backtest's store hands out the cached aggregate itself, and saves through it."""
        position = Position.open_book("gmo", "BTC_JPY", at=T0)
        store.save(position)
        first, again = store.find_position("gmo", "BTC_JPY"), store.find_position("gmo", "BTC_JPY")
        assert first == again
        assert first is not again
        store.hand_out_cached_state()
        cached = store.find_position("gmo", "BTC_JPY")
        assert cached is store.find_position("gmo", "BTC_JPY")
        assert cached is not None
        cached.apply_fill(
            order_id=order_id_for("s"), exchange="gmo", symbol="BTC_JPY", execution=fill("e1", "1")
        )
        store.save(cached)
        assert store.find_position("gmo", "BTC_JPY").quantity == Decimal(1)
        order = new_order(signal_id="sole")
        store.save(order)  # orders too: the object saved is the one handed out, no replay
        assert store.get_order(order.id) is order
        order.accept("X-sole", at=T0)
        store.save(order)
        assert store.get_order(order.id).exchange_order_id == "X-sole"
        with pytest.raises(UnknownOrder):
            store.get_order(order_id_for("never saved"))

    @pytest.mark.parametrize("chained", [True, False], ids=["chained", "unchained_source"])
    def test_a_log_appended_from_another_store_is_the_same_log(
        self, store: EventSourcedStore, chained: bool
    ) -> None:
        """A backtest runs on an in-memory store (without a chain of its own) and appends its
        log to the run's database at the end: the same events in the same order, after what
        was there, chained."""
        store.save(Position.open_book("gmo", "ETH_JPY", at=T0))  # a store already in use
        source = memory_event_store(chained=chained)
        orders = []
        for n in range(25):
            order = new_order(signal_id=f"s{n}")
            order.accept(f"X-{n}", at=T0)
            order.fill(fill(f"e{n}", "0.01"), at=T0 + timedelta(seconds=n))
            orders.append(order)
        position = Position.open_book("gmo", "BTC_JPY", at=T0)
        position.apply_fill(
            order_id=orders[0].id, exchange="gmo", symbol="BTC_JPY", execution=fill("e0", "0.01")
        )
        source.save(*orders, position)

        assert append_log(source, store, batch=7) == source.max_position() == 77
        theirs = [(e.aggregate_id, e.version, e.topic) for e in source.read_log(1, 1000)]
        ours = [(e.aggregate_id, e.version, e.topic) for e in store.read_log(2, 1000)]
        assert ours == theirs
        assert store.max_position() == 78
        assert [store.get_order(order.id) for order in orders] == orders
        assert store.find_position("gmo", "BTC_JPY") == position
        report = store.verify_chain()
        assert (report.ok, report.checked, report.head) == (True, 78, store.chain_head())

    def test_unknown_order_is_refused(self, store: EventSourcedStore) -> None:
        with pytest.raises(UnknownOrder):
            store.get_order(order_id_for("never-seen"))

    def test_position_id_is_not_an_order(self, store: EventSourcedStore) -> None:
        position = Position.open_book("gmo", "BTC_JPY", at=T0)
        store.save(position)
        with pytest.raises(UnknownOrder):
            store.get_order(position.id)

    def test_long_position_history_loads_back_equal_through_snapshots(
        self, store: EventSourcedStore
    ) -> None:
        position = Position.open_book("gmo", "BTC_JPY", at=T0)
        for n in range(1, 251):
            side = "BUY" if (n // 7) % 2 == 0 else "SELL"
            execution = Execution(
                f"e{n}", side, Decimal(15_000_000 + n), Decimal("0.001"), Decimal("0.5"), T0
            )
            position.apply_fill(order_id="o", exchange="gmo", symbol="BTC_JPY", execution=execution)
            if n % 30 == 0 or n == 250:
                store.save(position)
        loaded = store.find_position("gmo", "BTC_JPY")
        assert loaded == position
        assert loaded.version == 251
        assert store.snapshots is not None
        snapshot_versions = [s.originator_version for s in store.snapshots.get(position.id)]
        assert snapshot_versions == [100, 200]
        replayed = None
        for event in store.events_of(position.id):  # every event, ignoring the snapshots
            replayed = event.mutate(replayed)
        assert replayed == position

    # ----- concurrency and idempotency ------------------------------------------------------

    def test_stale_version_is_a_conflict_and_changes_nothing(
        self, store: EventSourcedStore
    ) -> None:
        order = new_order()
        store.save(order)
        first, second = store.get_order(order.id), store.get_order(order.id)
        first.accept("X-1", at=T0)
        store.save(first)
        second.reject("ERR-201", "insufficient margin", at=T0)
        with pytest.raises(ConcurrencyConflict):
            store.save(second)
        reloaded = store.get_order(order.id)
        assert reloaded.status.value == "NEW"
        assert reloaded.exchange_order_id == "X-1"
        assert reloaded.version == 2

    def test_duplicate_order_id_is_refused(self, store: EventSourcedStore) -> None:
        original = new_order("signal-42", size=Decimal("0.03"))
        store.save(original)
        twin = new_order("signal-42", size=Decimal("0.05"))
        assert twin.id == original.id
        with pytest.raises(DuplicateOrder) as refused:
            store.save(twin)
        assert "signal-42" in str(refused.value)
        assert store.get_order(original.id).size == Decimal("0.03")
        assert len(store.events_of(original.id)) == 1

    def test_save_is_atomic_across_aggregates(self, store: EventSourcedStore) -> None:
        position = Position.open_book("gmo", "BTC_JPY", at=T0)
        store.save(position)
        stale_position = store.find_position("gmo", "BTC_JPY")
        fresh_position = store.find_position("gmo", "BTC_JPY")
        assert stale_position is not None
        assert fresh_position is not None
        first = new_order()
        fresh_position.apply_fill(
            order_id=first.id, exchange="gmo", symbol="BTC_JPY", execution=fill("e1", "0.01")
        )
        store.save(fresh_position)
        second = new_order()
        second.fill(fill("e2", "0.01"))
        stale_position.apply_fill(
            order_id=second.id, exchange="gmo", symbol="BTC_JPY", execution=fill("e2", "0.01")
        )
        before = store.max_position()
        with pytest.raises(ConcurrencyConflict):
            store.save(second, stale_position)
        assert store.max_position() == before
        with pytest.raises(UnknownOrder):
            store.get_order(second.id)

    # ----- the global log -------------------------------------------------------------------

    def test_log_keeps_the_global_order_of_events(self, store: EventSourcedStore) -> None:
        a, b = new_order(), new_order()
        store.save(a)
        store.save(b)
        a.accept("A-1", at=T0)
        store.save(a)
        b.accept("B-1", at=T0)
        a.fill(fill("ea", "0.03"))
        store.save(b, a)
        log = store.read_log(start=1, limit=100)
        expected = [
            (a.id, 1, "Submitted"),
            (b.id, 1, "Submitted"),
            (a.id, 2, "Accepted"),
            (b.id, 2, "Accepted"),
            (a.id, 3, "Filled"),
        ]
        assert [(r.aggregate_id, r.version, type(r.event).__name__) for r in log] == expected
        positions = [r.position for r in log]
        assert positions == sorted(positions)
        assert len(set(positions)) == len(positions)
        assert store.max_position() == positions[-1]
        page = store.read_log(start=positions[2], limit=2)
        assert [r.position for r in page] == positions[2:4]

    def test_empty_log(self, store: EventSourcedStore) -> None:
        assert store.max_position() == 0
        assert store.read_log() == []

    # ----- exact values ---------------------------------------------------------------------

    @pytest.mark.parametrize(
        ("size", "price", "fee"),
        [
            ("0.00000001", "99999999999.99999999", "-0.00000001"),
            ("0.010", "15000000.50", "0E-8"),
            ("123456789012", "0.1", "12.34567800"),
        ],
    )
    def test_decimals_and_datetimes_round_trip_exactly(
        self, store: EventSourcedStore, size: str, price: str, fee: str
    ) -> None:
        order = new_order(size=Decimal(size), price=Decimal(price), at=T0.astimezone(JST))
        executed_at = datetime(2026, 3, 1, 18, 0, 0, 123456, tzinfo=JST)
        order.fill(
            Execution("e-exact", "BUY", Decimal(price), Decimal(size), Decimal(fee), executed_at),
            at=executed_at,
        )
        store.save(order)
        loaded_events = store.events_of(order.id)
        submitted, filled = loaded_events
        # as_tuple: same sign, digits and exponent, so '0.010' does not come back as '0.01'
        assert submitted.size.as_tuple() == Decimal(size).as_tuple()
        assert submitted.price.as_tuple() == Decimal(price).as_tuple()
        assert filled.fee.as_tuple() == Decimal(fee).as_tuple()
        assert filled.executed_at == executed_at
        assert filled.executed_at.utcoffset() == timedelta(hours=9)
        assert submitted.timestamp.utcoffset() == timedelta(hours=9)
        assert store.get_order(order.id).filled_notional == Decimal(price) * Decimal(size)

    def test_exchange_text_that_is_not_valid_utf8_is_kept_visibly(
        self, store: EventSourcedStore
    ) -> None:
        # json.loads of a broken exchange reply can yield lone surrogates; orjson cannot
        # encode them, so the domain keeps them as visible escapes instead of failing the save.
        order = new_order()
        order.reject("ERR-5003", "bad \ud800 reply", at=T0)
        store.save(order)
        assert store.get_order(order.id).reject_message == "bad \\ud800 reply"

    # ----- durability and append-only -------------------------------------------------------

    def test_events_survive_reopening_the_store(
        self, open_store: Callable[[], EventSourcedStore]
    ) -> None:
        if not self.survives_reopen:
            pytest.skip("an in-memory store ends with its process by design")
        first = open_store()
        order = new_order()
        store_and_close(first, order)
        second = open_store()
        try:
            assert second.get_order(order.id) == order
        finally:
            second.close()

    @pytest.mark.parametrize("statement", ["UPDATE {table} SET topic = 'x'", "DELETE FROM {table}"])
    def test_recorded_events_cannot_be_changed(
        self, store: EventSourcedStore, statement: str
    ) -> None:
        if not self.supports_raw_sql:
            pytest.skip("the in-memory store has no SQL surface to misuse")
        order = new_order()
        store.save(order)
        table = store.recorder.events_table_name  # type: ignore[attr-defined]
        with pytest.raises(Exception, match="append-only"):
            self.raw_execute(store, statement.format(table=table))
        assert store.get_order(order.id) == order
        assert len(store.events_of(order.id)) == 1

    # ----- the hash chain (issue 7) ---------------------------------------------------------

    def test_chain_head_moves_with_each_save(self, store: EventSourcedStore) -> None:
        assert store.chain_head() is None
        order = new_order()
        store.save(order)
        first = store.chain_head()
        assert first is not None
        assert first[0] == store.max_position()
        assert len(bytes.fromhex(first[1])) == 32
        order.accept("X-1", at=T0)
        position = Position.open_book("gmo", "BTC_JPY", at=T0)
        store.save(order, position)
        second = store.chain_head()
        assert second is not None
        assert second[0] == store.max_position() == first[0] + 2
        assert second[1] != first[1]
        assert store.verify_chain().head == second

    def test_verify_is_ok_on_an_untouched_log(self, store: EventSourcedStore) -> None:
        empty = store.verify_chain()
        assert (empty.ok, empty.checked, empty.head, empty.first_mismatch) == (True, 0, None, None)
        position = Position.open_book("gmo", "BTC_JPY", at=T0)
        for n in range(1, 121):  # past a snapshot: snapshots are not in the log
            order = new_order()
            execution = fill(f"e{n}", "0.001")
            order.fill(execution)
            position.apply_fill(
                order_id=order.id, exchange="gmo", symbol="BTC_JPY", execution=execution
            )
            store.save(order, position)
        seen: list[tuple[int, int]] = []
        report = store.verify_chain(lambda at, last: seen.append((at, last)))
        assert report.ok, report
        assert report.checked == store.max_position() == 3 * 120 + 1
        assert report.head == store.chain_head()
        assert (report.first_mismatch, report.unhashed, report.start) == (None, 0, 1)
        assert seen[-1] == (report.checked, report.checked)

    def test_chain_follows_the_documented_formula(self, store: EventSourcedStore) -> None:
        """hash_n = sha256(hash_n-1 || canonical bytes), recomputed here from raw rows."""
        order = new_order()
        order.accept("X-1", at=T0)
        store.save(order)
        store.save(Position.open_book("gmo", "BTC_JPY", at=T0))
        digest = bytes(32)
        for n in store.recorder.select_notifications(start=1, limit=100):

            def field(data: bytes) -> bytes:
                return len(data).to_bytes(4, "big") + data

            digest = hashlib.sha256(
                digest
                + n.id.to_bytes(8, "big")
                + field(str(n.originator_id).encode())
                + n.originator_version.to_bytes(8, "big")
                + field(n.topic.encode())
                + field(n.state)
            ).digest()
        assert store.chain_head() == (3, digest.hex())

    def test_hashes_are_computed_when_recorded_by_each_writer(
        self, open_store: Callable[[], EventSourcedStore]
    ) -> None:
        if not self.survives_reopen:
            pytest.skip("each in-memory store is its own log: no second writer to share it")
        first, second = open_store(), open_store()
        try:
            for n in range(6):
                writer = first if n % 2 == 0 else second
                order = new_order()
                writer.save(order)
                order.accept(f"X-{n}", at=T0)
                writer.save(order)
            assert first.chain_head() == second.chain_head()
            for reader in (first, second):
                report = reader.verify_chain()
                assert report.ok, report
                assert report.checked == 12
        finally:
            first.close()
            second.close()

    def test_chain_links_cannot_be_changed(self, store: EventSourcedStore) -> None:
        if not self.supports_raw_sql:
            pytest.skip("the in-memory store has no SQL surface to misuse")
        store.save(new_order())
        chain = store.recorder.chain_table_name  # type: ignore[attr-defined]
        for statement in (f"UPDATE {chain} SET hash = hash", f"DELETE FROM {chain}"):
            with pytest.raises(Exception, match="append-only"):
                self.raw_execute(store, statement)
        assert store.verify_chain().ok


def store_and_close(store: EventSourcedStore, order: Order) -> None:
    store.save(order)
    order.collect_events()
    store.close()


class TestMemoryEventStore(EventStoreContract):
    supports_raw_sql = False
    survives_reopen = False

    @pytest.fixture
    def open_store(self) -> Callable[[], EventSourcedStore]:
        return memory_event_store


class TestSqliteEventStore(EventStoreContract):
    @pytest.fixture
    def open_store(self, tmp_path: Path) -> Callable[[], EventSourcedStore]:
        return lambda: sqlite_event_store(tmp_path / "events.sqlite3")

    def raw_execute(self, store: EventSourcedStore, statement: str) -> None:
        path = store.env.get("SQLITE_DBNAME")
        connection = sqlite3.connect(str(path))
        try:
            connection.execute(statement)
            connection.commit()
        finally:
            connection.close()


@pytest.mark.postgres
class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def open_store(self, pg_url: str, pg_schema: str) -> Callable[[], EventSourcedStore]:
        return lambda: postgres_event_store(pg_url, schema=pg_schema)

    def raw_execute(self, store: EventSourcedStore, statement: str) -> None:
        schema = store.env.get("POSTGRES_SCHEMA")
        url = f"postgresql://{store.env.get('POSTGRES_USER')}@{store.env.get('POSTGRES_HOST')}:" + (
            f"{store.env.get('POSTGRES_PORT')}/{store.env.get('POSTGRES_DBNAME')}"
        )
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(str(schema))))
            conn.execute(statement)  # type: ignore[arg-type]

    def test_a_writer_waits_for_an_earlier_uncommitted_writer(
        self, store: EventSourcedStore
    ) -> None:
        """Notification ids become visible in order: a reader paging the log never skips one.

        Writer A inserts through the store's insert function and keeps its transaction open;
        writer B's save must wait for A's commit (without the table lock it would commit id 2
        while id 1 is still invisible).
        """
        recorder = store.recorder
        stored = store.mapper.to_stored_event(new_order().collect_events()[0])
        held = recorder.construct_pg_stored_event(  # type: ignore[attr-defined]
            originator_id=stored.originator_id,
            originator_version=stored.originator_version,
            topic=stored.topic,
            state=stored.state,
        )
        saved = threading.Event()
        order = new_order()

        def writer_b() -> None:
            store.save(order)
            saved.set()

        with recorder.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
            cursor.execute(recorder.sql_invoke_pg_function_insert_events, ([held],))  # type: ignore[attr-defined]
            first_id = cursor.fetchall()[0]
            thread = threading.Thread(target=writer_b)
            thread.start()
            assert not saved.wait(0.5), "writer B committed while writer A was in flight"
        thread.join(10)
        assert saved.is_set()
        log = store.read_log()
        assert [r.aggregate_id for r in log] == [stored.originator_id, order.id]
        assert log[-1].position > next(iter(first_id.values()))

    def test_truncate_is_refused_too(self, store: EventSourcedStore) -> None:
        store.save(new_order())
        table = store.recorder.events_table_name  # type: ignore[attr-defined]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            self.raw_execute(store, f"TRUNCATE {table}")
        assert store.max_position() == 1
