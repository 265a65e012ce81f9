"""The library's PostgreSQL recorder, with its fast insert function made gap-safe.

eventsourcing 9.5's `POSTGRES_ENABLE_DB_FUNCTIONS` path inserts through one plpgsql function
(one round trip instead of several: 1,450 vs 860 order transitions/s measured here), but that
function does not take the `LOCK TABLE ... IN EXCLUSIVE MODE` the library's other path takes.
Without it, two writers can commit notification ids out of order (id 2 visible before id 1),
and a reader that pages the log from its last position skips id 1 for good: a projection
would silently miss an event. This subclass puts the lock inside the function, so writers
serialise exactly as on the library's default path, at the fast path's cost.

The hash chain (issue 7, chain.py) is computed by the database: a statement-level AFTER
INSERT trigger on the events table reads the last link and writes one link per new event
to `<events>_chain`, in the inserting transaction. Both of the library's insert paths take
the table lock before inserting, so "the last link" is well defined; a trigger (rather than
code in the insert function) also covers the library's non-function path and any other
INSERT. The statements are run at start by postgres.py, so stores created before the chain
get the trigger; their older events stay unhashed and verification starts after them.
"""

from __future__ import annotations

from collections.abc import Sequence

from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.sql import SQL, Composed, Identifier

from trading_engine.adapters.eventstore.chain import Link


class GaplessPostgresApplicationRecorder(PostgresApplicationRecorder):
    def __init__(
        self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.sql_create_statements[self.create_insert_function_statement_index] = SQL(
            "CREATE OR REPLACE FUNCTION "
            "{schema}.{insert_events}(events {schema}.{event}[]) "
            "RETURNS SETOF bigint "
            "LANGUAGE plpgsql "
            "AS "
            "$BODY$"
            "BEGIN"
            "    SET LOCAL lock_timeout = '{lock_timeout}s';"
            "    LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE;"
            ""
            "    NOTIFY {channel};"
            "    RETURN QUERY"
            "    INSERT INTO {schema}.{table} AS t ("
            "    originator_id, originator_version, topic, state)"
            "    SELECT originator_id, originator_version, topic, state"
            "    FROM unnest(events)"
            "    RETURNING notification_id;"
            "END;"
            "$BODY$"
        ).format(
            insert_events=Identifier(self.pg_function_name_insert_events),
            lock_timeout=self.datastore.lock_timeout,
            channel=Identifier(self.channel_name),
            event=Identifier(self.stored_event_type_name),
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
        )

        self.chain_table_name = f"{events_table_name}_chain"
        chain = Identifier(self.datastore.schema, self.chain_table_name)
        self.last_link_statement = SQL(
            "SELECT notification_id, previous_id, hash FROM {chain} "
            "ORDER BY notification_id DESC LIMIT 1"
        ).format(chain=chain)
        self.select_links_statement = SQL(
            "SELECT notification_id, previous_id, hash FROM {chain} "
            "WHERE notification_id > %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT %s"
        ).format(chain=chain)

    def chain_statements(self) -> list[Composed]:
        """The chain's table, and the trigger that links each new event (chain.py's bytes)."""
        schema = Identifier(self.datastore.schema)
        chain = Identifier(self.datastore.schema, self.chain_table_name)
        events = Identifier(self.datastore.schema, self.events_table_name)
        function = Identifier(self.datastore.schema, f"{self.events_table_name}_link")
        return [
            SQL(
                "CREATE TABLE IF NOT EXISTS {chain} ("
                "notification_id bigint PRIMARY KEY, previous_id bigint, hash bytea NOT NULL)"
            ).format(chain=chain),
            SQL(
                "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger "
                "LANGUAGE plpgsql AS $BODY$ "
                "DECLARE previous_id bigint; previous bytea; r record; "
                "BEGIN "
                "  SELECT c.notification_id, c.hash INTO previous_id, previous FROM {chain} c "
                "  ORDER BY c.notification_id DESC LIMIT 1; "
                "  previous := coalesce(previous, decode(repeat('00', 32), 'hex')); "
                "  FOR r IN SELECT n.notification_id, n.originator_version, n.state, "
                "      convert_to(n.originator_id::text, 'UTF8') AS oid, "
                "      convert_to(n.topic, 'UTF8') AS topic "
                "    FROM new_events n ORDER BY n.notification_id LOOP "
                "    previous := sha256(previous || int8send(r.notification_id) "
                "      || int4send(length(r.oid)) || r.oid || int8send(r.originator_version) "
                "      || int4send(length(r.topic)) || r.topic "
                "      || int4send(length(r.state)) || r.state); "
                "    INSERT INTO {chain} (notification_id, previous_id, hash) "
                "      VALUES (r.notification_id, previous_id, previous); "
                "    previous_id := r.notification_id; "
                "  END LOOP; "
                "  RETURN NULL; "
                "END $BODY$"
            ).format(function=function, chain=chain, schema=schema),
            SQL(
                "CREATE OR REPLACE TRIGGER {trigger} AFTER INSERT ON {events} "
                "REFERENCING NEW TABLE AS new_events "
                "FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            ).format(
                trigger=Identifier(f"{self.events_table_name}_chain_link"),
                events=events,
                function=function,
            ),
        ]

    def last_link(self) -> Link | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.last_link_statement)
            row = curs.fetchone()
        if row is None:
            return None
        return Link(row["notification_id"], row["previous_id"], bytes(row["hash"]))

    def select_links(self, after: int, stop: int, limit: int) -> Sequence[Link]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.select_links_statement, (after, stop, limit))
            return [
                Link(row["notification_id"], row["previous_id"], bytes(row["hash"]))
                for row in curs.fetchall()
            ]
