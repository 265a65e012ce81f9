"""Watches on one aggregate of the event store (the `ChangeWatch` port), one per backend.

* PostgreSQL: a statement trigger on the events table NOTIFYs `<events>_watched` with
  `schema id version` for each aggregate of the watched type an INSERT wrote (whoever the
  writer: the `risk` commands, another engine, plain SQL). The watch LISTENs on a connection
  of its own and, before each signal, takes what has arrived without waiting
  (`notifies(timeout=0)` reads the socket: no round trip). A notification is sent at commit,
  so once `risk halt` has returned, the next look sees it; the window left is the delivery
  of that message over the socket (microseconds on one host, a network hop otherwise), as
  small as the old read's (a halt committed after the read went unseen just the same).
  A lost connection is noticed on the next look (the socket reads as closed) and answered
  "cannot tell" until it is back, LISTENing again; the trigger is (re)created when a watch
  first connects (a role that may not create it gets a warning, and a read per signal).
* SQLite (one file, other processes write it directly): `PRAGMA data_version` on a connection
  of the watch's own changes whenever any other connection committed, this process's store
  included; only then is the aggregate's last version looked up (one indexed read).
* In-process stores (the library's POPO recorder, SQLite `:memory:`): no other process can
  write them; the watch asks the recorder for an event past the version (no I/O).
"""

from __future__ import annotations

import contextlib
import logging
import select
import sqlite3
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.utils import get_topic

from trading_engine.ports.change_watch import ChangeWatch

if TYPE_CHECKING:  # psycopg is imported by the PostgreSQL watch itself (start-up, issue 16)
    import psycopg

log = logging.getLogger(__name__)

_POSTGRES_KEYS = (
    "POSTGRES_DBNAME",
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_CONNECT_TIMEOUT",
)
# A dead peer that never closed the socket (a network partition) is noticed within ~1 min.
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 20,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def change_watch(store: Any, aggregate_id: UUID, aggregate_class: type) -> ChangeWatch:
    """The watch on `aggregate_id` (of `aggregate_class`) for `store`'s backend."""
    recorder = store.recorder
    persistence = store.env.get("PERSISTENCE_MODULE") or ""
    if persistence == "eventsourcing.postgres":
        from psycopg.conninfo import make_conninfo

        from trading_engine.adapters.eventstore.postgres import connection_string

        env = {key: store.env.get(key) or "" for key in _POSTGRES_KEYS}
        schema = recorder.datastore.schema
        conninfo = make_conninfo(
            connection_string(env),
            # what an operator sees in pg_stat_activity (and what a test terminates)
            application_name=f"trading-engine watch {schema}"[:63],
            **_KEEPALIVES,
        )
        return PostgresChangeWatch(
            conninfo,
            schema,
            recorder.events_table_name,
            aggregate_id,
            get_topic(aggregate_class) + ".",
        )
    if persistence == "eventsourcing.sqlite" and not recorder.datastore.pool.is_sqlite_memory_mode:
        return SqliteChangeWatch(
            recorder.datastore.pool.db_name, recorder.events_table_name, aggregate_id
        )
    return InProcessChangeWatch(recorder, aggregate_id)


class PostgresChangeWatch:
    def __init__(
        self, conninfo: str, schema: str, events_table: str, aggregate_id: UUID, topic_prefix: str
    ) -> None:
        self._conninfo, self._schema, self._table = conninfo, schema, events_table
        self._id, self._prefix = str(aggregate_id), topic_prefix
        self.channel = f"{events_table}_watched"
        self._conn: psycopg.Connection[Any] | None = None
        self._installed = False
        self._unsure = True  # until connected and listening
        self._seen = 0  # the highest version notified for the aggregate
        self.refused: str | None = None  # why the trigger could not be made, if it could not

    def changed_since(self, version: int) -> bool:
        import psycopg

        if self.refused is not None:
            return True  # no notification will come: read every time, as before the watch
        try:
            conn = self._connection()
            while True:
                for note in conn.notifies(timeout=0):
                    self._note(note.payload)
                # A closed socket also reads as ready: the next `notifies` raises, so a dead
                # connection is known now rather than one look later.
                if not select.select([conn.fileno()], [], [], 0)[0]:
                    break
        except psycopg.Error:
            self.close()
            self._unsure = True
        unsure, self._unsure = self._unsure, False
        return unsure or self._seen > version

    def _note(self, payload: str) -> None:
        schema, _, rest = payload.partition(" ")
        aggregate_id, _, version = rest.partition(" ")
        if schema == self._schema and aggregate_id == self._id:
            self._seen = max(self._seen, int(version))

    def _connection(self) -> psycopg.Connection[Any]:
        import psycopg
        from psycopg import sql

        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self._conninfo, autocommit=True)
            try:
                if not self._installed:
                    try:
                        self._install(conn)
                    except psycopg.ProgrammingError as no:  # (InsufficientPrivilege is one)
                        # (a role that may not create triggers): say so once, and let the
                        # caller read the aggregate on every look rather than reconnect
                        self.refused = f"{type(no).__name__}: {no}"
                        log.warning(
                            "no watch on %s (%s): the trading state is read for every signal",
                            self._id,
                            self.refused,
                        )
                        raise
                    self._installed = True
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            except BaseException:
                conn.close()
                raise
            self._conn, self._unsure = conn, True
        return self._conn

    def _install(self, conn: psycopg.Connection[Any]) -> None:
        from psycopg import sql

        schema = sql.Identifier(self._schema)
        function = sql.Identifier(f"{self._table}_notify_watched")
        statements = [
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{function}() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN "
                "PERFORM pg_notify({channel}, TG_TABLE_SCHEMA || ' ' || n.originator_id::text "
                "|| ' ' || max(n.originator_version)::text) "
                "FROM new_events n WHERE left(n.topic, {length}) = {prefix} "
                "GROUP BY n.originator_id; "
                "RETURN NULL; END $$"
            ).format(
                schema=schema,
                function=function,
                channel=sql.Literal(self.channel),
                length=sql.Literal(len(self._prefix)),
                prefix=sql.Literal(self._prefix),
            ),
            sql.SQL(
                "CREATE OR REPLACE TRIGGER {trigger} AFTER INSERT ON {schema}.{table} "
                "REFERENCING NEW TABLE AS new_events "
                "FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{function}()"
            ).format(
                trigger=sql.Identifier(f"{self._table}_notify_watched"),
                schema=schema,
                table=sql.Identifier(self._table),
                function=function,
            ),
        ]
        with conn.transaction():
            # one start-up at a time: concurrent CREATE OR REPLACE on one function collide
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('trading-engine-watched'))")
            for statement in statements:
                conn.execute(statement)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


class SqliteChangeWatch:
    def __init__(self, path: str, events_table: str, aggregate_id: UUID) -> None:
        self._path, self._id = path, aggregate_id.hex  # the library stores ids as hex text
        self._lookup = f"SELECT max(originator_version) FROM {events_table} WHERE originator_id=?"
        self._conn: sqlite3.Connection | None = None
        self._data_version: int | None = None

    def changed_since(self, version: int) -> bool:
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(self._path, check_same_thread=False)
            # fetchall: a statement left unfinished would hold its read snapshot open
            ((data_version,),) = self._conn.execute("PRAGMA data_version").fetchall()
            if data_version == self._data_version:
                return False
            ((latest,),) = self._conn.execute(self._lookup, (self._id,)).fetchall()
        except sqlite3.Error:
            self.close()
            return True
        self._data_version = data_version
        return latest is not None and latest > version

    def close(self) -> None:
        conn, self._conn, self._data_version = self._conn, None, None
        if conn is not None:
            conn.close()


class InProcessChangeWatch:
    def __init__(self, recorder: Any, aggregate_id: UUID) -> None:
        self._recorder, self._id = recorder, aggregate_id

    def changed_since(self, version: int) -> bool:
        # the last event only (newest first, one): asking for those past `version` would
        # walk all of the aggregate's events when there are none, on every signal
        last = self._recorder.select_events(self._id, desc=True, limit=1)
        return bool(last) and last[0].originator_version > version

    def close(self) -> None:
        pass
