"""PostgreSQL event store: production. `DATABASE_URL` names the server and database.

The events table is append-only at the database level: row triggers refuse UPDATE and
DELETE, a statement trigger refuses TRUNCATE. Only someone who can drop the triggers
(a superuser, the table owner) can change history, and issue 7's hash chain exists to
catch that: its links table `<events>_chain` is append-only the same way, and the trigger
that writes it (postgres_recorder.py) is (re)created here at every start.
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from psycopg import sql

from trading_engine.adapters.eventstore.application import EventSourcedStore
from trading_engine.adapters.eventstore.postgres_recorder import GaplessPostgresApplicationRecorder


def postgres_env(database_url: str, schema: str | None = None) -> dict[str, str]:
    """The library's POSTGRES_* settings from a `postgresql://user:pass@host:port/db` URL."""
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
        raise ValueError("expected postgresql://[user[:password]@]host[:port]/dbname")
    query = parse_qs(parts.query)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": unquote(parts.path.strip("/")),
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_SCHEMA": schema or query.get("schema", ["public"])[0],
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "POSTGRES_POOL_SIZE": "5",
        # Pinging each pooled connection before use costs a round trip per save (measured:
        # 1,639 vs 1,236 order transitions/s); off by default, `?pre_ping=true` turns it on.
        "POSTGRES_PRE_PING": "y" if _flag(query, "pre_ping") else "n",
        # The library's insert function saves round trips per transaction; our recorder
        # subclass adds the table lock it lacks (see postgres_recorder.py).
        "POSTGRES_ENABLE_DB_FUNCTIONS": "y",
        "APPLICATION_RECORDER_TOPIC": (
            "trading_engine.adapters.eventstore.postgres_recorder:GaplessPostgresApplicationRecorder"
        ),
    }


def _flag(query: dict[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[0].strip().lower() in ("1", "y", "yes", "true", "on")


def connection_string(env: dict[str, str]) -> str:
    return psycopg.conninfo.make_conninfo(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"] or None,
        connect_timeout=env["POSTGRES_CONNECT_TIMEOUT"],
    )


def postgres_event_store(database_url: str, schema: str | None = None) -> EventSourcedStore:
    env = postgres_env(database_url, schema)
    with psycopg.connect(connection_string(env), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(env["POSTGRES_SCHEMA"]))
        )
    store = EventSourcedStore(env)
    recorder = store.recorder
    assert isinstance(recorder, GaplessPostgresApplicationRecorder)
    _make_append_only(env, recorder)
    return store


def _make_append_only(env: dict[str, str], recorder: GaplessPostgresApplicationRecorder) -> None:
    """Refusing triggers on the events and chain tables, and the chain's own trigger."""
    schema = sql.Identifier(env["POSTGRES_SCHEMA"])
    function = sql.Identifier("refuse_event_change")
    statements: list[sql.Composable] = [
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {schema}.{function}() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION "
            "'trading-engine: % on % refused: the event log is append-only', "
            "TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege'; END $$"
        ).format(schema=schema, function=function),
        *recorder.chain_statements(),
    ]
    for table_name in (recorder.events_table_name, recorder.chain_table_name):
        table = sql.Identifier(table_name)
        statements += [
            sql.SQL(
                "CREATE OR REPLACE TRIGGER {trigger} BEFORE UPDATE OR DELETE ON {schema}.{table} "
                "FOR EACH ROW EXECUTE FUNCTION {schema}.{function}()"
            ).format(
                trigger=sql.Identifier(f"{table_name}_append_only"),
                schema=schema,
                table=table,
                function=function,
            ),
            sql.SQL(
                "CREATE OR REPLACE TRIGGER {trigger} BEFORE TRUNCATE ON {schema}.{table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{function}()"
            ).format(
                trigger=sql.Identifier(f"{table_name}_no_truncate"),
                schema=schema,
                table=table,
                function=function,
            ),
        ]
    # One start-up at a time: concurrent CREATE OR REPLACE on one function can collide.
    with (
        psycopg.connect(connection_string(env), autocommit=True) as conn,
        conn.transaction(),
    ):
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('trading-engine-append-only'))")
        for statement in statements:
            conn.execute(statement)
