"""The projection store port: read tables derived from the event log, and where each
projection has got to in the log, changed together.

A projection turns events into `RowChange`s; the store applies a batch of them and moves the
projection's position in one transaction, so a crash leaves either both or neither, and a
batch is never applied twice. Tables are named by their live names ("orders"); a rebuild
writes the same changes into fresh staging copies and swaps them in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Lookup:
    """A value read from another table when the row is written (a reference by natural key):
    `SELECT column FROM table WHERE key_column = key`, NULL if absent."""

    table: str
    column: str
    key_column: str
    key: Any


@dataclass(frozen=True, slots=True)
class RowChange:
    """Insert the row, or update it where a row with the same `key` exists. Columns in
    `insert_only` are written on insert and kept on update (the row's id, its creation
    time); with `update=False` an existing row is left as it is."""

    table: str
    key: tuple[str, ...]
    values: Mapping[str, Any]
    insert_only: frozenset[str] = field(default_factory=frozenset)
    update: bool = True


class ProjectionStoreError(Exception):
    """The store could not apply a batch (its message says why)."""


class PositionMoved(ProjectionStoreError):
    """The projection's position is not where this writer read it (another writer, or a
    rebuild swap, moved it): re-read the position and carry on from there."""


@dataclass(frozen=True, slots=True)
class TableState:
    name: str
    rows: int


class ProjectionStore(Protocol):
    def position(self, projection: str) -> int:
        """The last log position applied by `projection` (0: nothing yet)."""
        ...

    def commit(
        self,
        projection: str,
        changes: Sequence[RowChange],
        *,
        expected: int,
        position: int,
        staging: bool = False,
    ) -> None:
        """Apply `changes` in order and move `projection` from `expected` to `position`, in
        one transaction. Raises `PositionMoved` if the stored position is not `expected`, and
        `ProjectionStoreError` if a change cannot be applied (nothing is applied then). With
        `staging`, the changes go to the staging copies of the tables."""
        ...

    def start_staging(self, projection: str, tables: Sequence[str]) -> None:
        """Fresh, empty staging copies of `tables` (same columns, keys and indexes as the live
        tables now), tracked as a projection of their own from position 0."""
        ...

    def swap(
        self,
        projection: str,
        tables: Sequence[str],
        catch_up: Callable[[int], tuple[Sequence[RowChange], int]],
    ) -> int:
        """In one transaction: hold the live tables and the projection's position, let
        `catch_up(staged_position)` give the changes from there to the log's head, apply them
        to the staging copies, replace the live tables by them and set the projection's
        position to the head. Readers see the old tables until the commit, then the new.
        Returns the position the projection is at after the swap."""
        ...

    def tables(self, names: Sequence[str]) -> list[TableState]: ...

    def rows(self, table: str, order_by: str = "id") -> list[dict[str, Any]]:
        """Every row of a live table, as column → value (tests, audits, small tables)."""
        ...

    def close(self) -> None: ...


class LogWatcher(Protocol):
    """Wakes a projection when the log may have grown. It may miss a wake-up (a dropped
    notification); the runner looks at the log after `timeout` regardless."""

    def wait(self, timeout: float) -> bool:
        """True if woken by a new event, False on timeout."""
        ...

    def close(self) -> None: ...
