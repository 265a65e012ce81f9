"""`RowChange`s as SQL: one upsert statement per row shape, run as a batch.

Shared by the PostgreSQL and SQLite stores; they differ in the placeholder, in how a table
name is qualified (schema, staging copy) and in how values are converted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import groupby
from typing import Any

from trading_engine.ports.projections import Lookup, RowChange

Quote = Callable[[str], str]  # table name → qualified, quoted SQL name
Convert = Callable[[Any], Any]


def _shape(change: RowChange) -> tuple[Any, ...]:
    lookups = tuple(
        (column, value.table, value.column, value.key_column)
        for column, value in change.values.items()
        if isinstance(value, Lookup)
    )
    return (
        change.table,
        tuple(change.values),
        change.key,
        change.insert_only,
        change.update,
        lookups,
    )


def upsert_sql(change: RowChange, table: Quote, placeholder: str) -> str:
    columns = list(change.values)
    values = []
    for value in change.values.values():
        if isinstance(value, Lookup):
            values.append(
                f"(SELECT {value.column} FROM {table(value.table)} "
                f"WHERE {value.key_column} = {placeholder})"
            )
        else:
            values.append(placeholder)
    statement = (
        f"INSERT INTO {table(change.table)} ({', '.join(columns)}) "
        f"VALUES ({', '.join(values)}) ON CONFLICT ({', '.join(change.key)}) "
    )
    updated = [c for c in columns if c not in change.insert_only and c not in change.key]
    if not change.update or not updated:
        return statement + "DO NOTHING"
    return statement + "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in updated)


def parameters(change: RowChange, convert: Convert) -> tuple[Any, ...]:
    return tuple(
        convert(value.key if isinstance(value, Lookup) else value)
        for value in change.values.values()
    )


def batches(
    changes: Sequence[RowChange], table: Quote, placeholder: str, convert: Convert
) -> Iterable[tuple[str, list[tuple[Any, ...]]]]:
    """(statement, parameter rows) for runs of consecutive changes of the same shape, in the
    order given (so a referenced row is written before the row that refers to it)."""
    for _, run in groupby(changes, key=_shape):
        rows = list(run)
        yield upsert_sql(rows[0], table, placeholder), [parameters(r, convert) for r in rows]


def by_table(changes: Iterable[RowChange]) -> dict[str, list[RowChange]]:
    """The changes grouped by table, tables in the order they first appear."""
    grouped: dict[str, list[RowChange]] = {}
    for change in changes:
        grouped.setdefault(change.table, []).append(change)
    return grouped
