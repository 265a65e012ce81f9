"""One `ChangeWatch` contract, run against every store's watch: in-process, SQLite, PostgreSQL.

A watch tells, without a round trip, whether another writer saved the watched aggregate past
the version in hand. Its first look may say "cannot tell" (True); after that it says True
once another writer saved a newer version and False when nothing newer was saved, its own
process's saves included (whose version the caller then holds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from trading_engine.adapters.eventstore.change_watch import PostgresChangeWatch, change_watch
from trading_engine.adapters.eventstore.memory import memory_event_store
from trading_engine.adapters.eventstore.postgres import postgres_event_store
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.domain.risk import TradingControl, control_id_for
from trading_engine.ports.change_watch import ChangeWatch

T0 = datetime(2026, 5, 1, tzinfo=UTC)
ID = control_id_for("gmo")


def eventually(look: Callable[[], bool]) -> bool:
    """A notification travels after the writer's commit: look until it says True (bounded)."""
    deadline = time.monotonic() + 10
    while not look():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class ChangeWatchContract:
    """Subclasses give `stores`: (this process's store, another writer's store) on one log."""

    @pytest.fixture
    def stores(self, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
        raise NotImplementedError

    @pytest.fixture
    def watch(self, stores: tuple[Any, Any]) -> Iterator[ChangeWatch]:
        made = change_watch(stores[0], ID, TradingControl)
        made.changed_since(0)  # the first look (connects, where there is a connection)
        yield made
        made.close()

    def test_nothing_saved_nothing_changed(self, watch: ChangeWatch) -> None:
        assert watch.changed_since(0) is False
        assert watch.changed_since(0) is False

    def test_another_writers_save_is_seen_and_then_known(
        self, stores: tuple[Any, Any], watch: ChangeWatch
    ) -> None:
        _, other = stores
        control = TradingControl.open("gmo", at=T0)
        control.halt("desk says stop", at=T0)
        other.save(control)  # versions 1 and 2, by another writer
        assert eventually(lambda: watch.changed_since(0))
        assert watch.changed_since(2) is False  # the caller read version 2: nothing newer
        control.resume("all clear", at=T0)
        other.save(control)  # version 3
        assert eventually(lambda: watch.changed_since(2))
        assert watch.changed_since(3) is False

    def test_own_saves_at_the_version_in_hand_are_no_change(
        self, stores: tuple[Any, Any], watch: ChangeWatch
    ) -> None:
        own, _ = stores
        control = TradingControl.open("gmo", at=T0)
        own.save(control)
        control.halt("from here", at=T0)
        own.save(control)
        time.sleep(0.2)  # (a notification, where there is one, has arrived: it must not count)
        assert watch.changed_since(control.version) is False

    def test_other_aggregates_are_not_watched(
        self, stores: tuple[Any, Any], watch: ChangeWatch
    ) -> None:
        _, other = stores
        other.save(TradingControl.open("another_exchange", at=T0))
        time.sleep(0.2)
        assert watch.changed_since(0) is False


class TestInProcessWatch(ChangeWatchContract):
    @pytest.fixture
    def stores(self, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Any, Any]:  # type: ignore[override]
        store = memory_event_store()
        return store, store  # one process, one store: "another writer" is another caller


class TestSqliteWatch(ChangeWatchContract):
    @pytest.fixture
    def stores(self, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
        own = sqlite_event_store(tmp_path / "events.sqlite3")
        other = sqlite_event_store(tmp_path / "events.sqlite3")
        yield own, other
        other.close()
        own.close()


@pytest.mark.postgres
class TestPostgresWatch(ChangeWatchContract):
    @pytest.fixture
    def stores(self, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
        url: str = request.getfixturevalue("pg_url")
        schema: str = request.getfixturevalue("pg_schema")
        own = postgres_event_store(url, schema=schema)
        other = postgres_event_store(url, schema=schema)
        yield own, other
        other.close()
        own.close()

    def test_a_trigger_it_may_not_make_means_a_read_every_time(
        self, stores: tuple[Any, Any], pg_schema: str
    ) -> None:
        own, _ = stores
        real = change_watch(own, ID, TradingControl)
        assert isinstance(real, PostgresChangeWatch)
        broken = PostgresChangeWatch(
            real._conninfo,
            pg_schema,
            "no_such_table",
            ID,
            "trading_engine.domain.risk:TradingControl.",
        )
        assert broken.changed_since(0) is True
        assert "no_such_table" in str(broken.refused)
        assert broken.changed_since(0) is True  # without connecting again
        broken.close()
        real.close()
