"""Runs projections over the event log: catch up, follow, rebuild, report.

Each batch of events becomes one `ProjectionStore.commit`: the rows and the projection's new
position together. A projection that crashes resumes from its stored position; one that
meets an event it cannot apply commits everything before that event and stops with the
event's position and the reason; it never skips it. After a fix it resumes from that event.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from trading_engine.app.projections.tables import EventNotApplicable, Projection
from trading_engine.ports.event_store import EventStore, RecordedEvent
from trading_engine.ports.projections import (
    LogWatcher,
    PositionMoved,
    ProjectionStore,
    ProjectionStoreError,
    RowChange,
)

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (position reached, head)

REBUILD_CHUNK = 20_000  # events per staging transaction of a rebuild's bulk load
PARALLEL_FROM = 200_000  # events: a shorter log is loaded in one process (a helper's start-up)
MAX_PROCESSES = 4  # each holds its own connections and ~200 MB (a 20,000-event chunk in hand)
_BULK_METHODS = ("log_pages", "begin_load", "load", "end_load")


class BulkLoading(Protocol):
    """What a projection store offers a rebuild beyond `ProjectionStore` (both stores do)."""

    def log_pages(
        self,
        log: EventStore,
        after: int,
        upto: int,
        size: int,
        part: tuple[int, int] | None = None,
    ) -> Iterable[Sequence[RecordedEvent]]:
        """The log's events after `after` up to `upto`, decoded, in pages of `size`; with
        `part` (k, n), those of the aggregates in part k of n."""
        ...

    def opener(self, log: EventStore) -> tuple[Callable[[], Any], Callable[[], Any]] | None:
        """Optional: how another process opens `log` and this store (picklable callables),
        to load parts of a rebuild next to this one; None if it cannot."""
        ...

    def begin_load(self, projection: str, tables: Sequence[str]) -> None:
        """The staging tables are about to be loaded in bulk (the store may drop what only
        slows that down and cannot fail on what a projection writes)."""
        ...

    def load(
        self,
        projection: str,
        tables: Sequence[str],
        new: Sequence[RowChange],
        known: Sequence[RowChange],
        *,
        expected: int,
        position: int | None,
    ) -> None:
        """Write a batch into the staging tables and move their position, in one transaction:
        `new` rows' keys are not in the staging tables yet, `known` rows' may be. With
        `position` None, the position is left alone (a part, loaded in another process)."""
        ...

    def end_load(self, projection: str, tables: Sequence[str]) -> None:
        """The bulk load is over: the staging tables as `start_staging` made them again."""
        ...


class ProjectionFailed(Exception):
    """A projection stopped at an event it cannot apply."""

    def __init__(self, projection: str, position: int, event: str, reason: str) -> None:
        super().__init__(
            f"projection {projection} stopped at log position {position} ({event}): {reason}"
        )
        self.projection, self.position, self.event, self.reason = (
            projection,
            position,
            event,
            reason,
        )

    def __reduce__(self) -> tuple[type[ProjectionFailed], tuple[str, int, str, str]]:
        # raised in a helper process of a rebuild, it is pickled back whole
        return type(self), (self.projection, self.position, self.event, self.reason)


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    name: str
    position: int
    head: int

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


def collapse(changes: Sequence[RowChange], tables: Sequence[str]) -> list[RowChange]:
    """The batch's changes with each row written once (its last state; what is kept on update
    from its first) and tables in dependency order. A batch of a thousand order events touches
    a few hundred orders: this is most of a rebuild's speed."""
    latest: dict[tuple[object, ...], RowChange] = {}
    for change in changes:
        values, columns = change.values, change.key
        key = (
            (change.table, values[columns[0]])
            if len(columns) == 1
            else (change.table, *[values[c] for c in columns])
        )
        first = latest.get(key)
        if first is None:
            latest[key] = change
        elif change.update:
            kept = {c: first.values[c] for c in change.insert_only if c in first.values}
            latest[key] = RowChange(
                change.table,
                change.key,
                {**change.values, **kept},
                change.insert_only,
                change.update,
            )
    rank = {table: n for n, table in enumerate(tables)}
    return sorted(latest.values(), key=lambda c: rank.get(c.table, len(rank)))


class ProjectionRunner:
    def __init__(
        self,
        projection: Projection,
        log_store: EventStore,
        store: ProjectionStore,
        *,
        batch_size: int = 1000,
        staging: bool = False,
    ) -> None:
        self.projection, self._log, self._store = projection, log_store, store
        self._batch_size, self._staging = batch_size, staging
        self._name = projection.name + ("__staging" if staging else "")

    def status(self) -> ProjectionStatus:
        return ProjectionStatus(
            self._name, self._store.position(self._name), self._log.max_position()
        )

    def catch_up(self, progress: Progress | None = None, until: int | None = None) -> int:
        """Apply every event after the stored position (up to `until`). Returns events read."""
        position = self._store.position(self._name)
        head = until if until is not None else self._log.max_position()
        read = 0
        while position < head:
            page = self._read(position, min(self._batch_size, head - position))
            if not page:
                break
            try:
                self._commit(page, position)
            except PositionMoved as moved:
                log.warning("projection %s: %s; carrying on from there", self._name, moved)
                self.projection.forget()
                position = self._store.position(self._name)
                continue
            except ProjectionStoreError:
                self._apply_one_by_one(page, position)  # raises at the culprit
            position = page[-1].position
            read += len(page)
            if progress is not None:
                progress(position, head)
        return read

    def changes_after(self, position: int) -> tuple[list[RowChange], int]:
        """Every change from `position` to the log's head, and the head (a swap's catch-up)."""
        changes: list[RowChange] = []
        while True:
            page = self._read(position, self._batch_size)
            if not page:
                return collapse(changes, self.projection.tables), position
            changes += self._changes(page)  # collapsed below: each row written once
            position = page[-1].position

    def load(
        self,
        progress: Progress | None = None,
        chunk_size: int = REBUILD_CHUNK,
        processes: int | None = None,
    ) -> int:
        """A rebuild's bulk path into fresh staging tables: the log read in large pages and
        applied in chunks, each chunk's rows written once (a row the rebuild has not written
        yet is inserted whole, with COPY where the store can; only a row written by an
        earlier chunk is upserted). Reading the next page and writing the last chunk run in
        threads of their own, next to applying this one: they mostly wait on the database.
        A projection whose rows each belong to one aggregate (`Projection.by_aggregate`) is
        loaded by `processes` processes (default: one per core, for a log of at least
        `PARALLEL_FROM` events), each with its own part of the aggregates, where the store
        can open itself in another process. Anything it cannot do that way (a store without
        the bulk path, an event it cannot decode, a row the tables refuse) hands over to
        `catch_up` from the position reached, which applies the rest exactly as always and
        reports any failure at its event. Returns events read."""
        store = self._store
        if not (self._staging and all(hasattr(store, m) for m in _BULK_METHODS)):
            return self.catch_up(progress)
        bulk: BulkLoading = store  # type: ignore[assignment]
        name, tables = self.projection.name, self.projection.tables
        start = store.position(self._name)
        head = self._log.max_position()
        bulk.begin_load(name, tables)
        parts = self._parts(bulk, head - start, processes)
        if parts is not None:
            try:
                read = self._load_in_parts(bulk, parts, start, head, chunk_size, progress)
            except Exception as error:  # from the start, in one process: it names a culprit
                log.warning(
                    "projection %s: loading in %d processes failed (%s: %s); again in one",
                    self._name,
                    len(parts),
                    type(error).__name__,
                    error,
                )
                self.projection.forget()
                store.start_staging(name, tables)
                bulk.begin_load(name, tables)
                start = store.position(self._name)
            else:
                bulk.end_load(name, tables)
                return read
        try:
            read = _load_chunks(
                self.projection, self._name, bulk, self._log, start, head, chunk_size, progress
            )
        except ProjectionFailed:
            raise
        except Exception as error:  # the exact path from here, which names any culprit
            reached = store.position(self._name)
            log.warning(
                "projection %s: bulk load stopped at %d (%s: %s); carrying on batch by batch",
                self._name,
                reached,
                type(error).__name__,
                error,
            )
            self.projection.forget()
            bulk.end_load(name, tables)
            return reached - start + self.catch_up(progress, until=head)
        bulk.end_load(name, tables)
        return read

    def _parts(
        self, bulk: BulkLoading, events: int, processes: int | None
    ) -> list[tuple[int, int]] | None:
        """The parts (k, n) to load in n processes, or None: load in this one."""
        if processes is None:
            cores = min(os.cpu_count() or 1, MAX_PROCESSES)
            processes = cores if events >= PARALLEL_FROM else 1
        if processes < 2 or not getattr(self.projection, "by_aggregate", False):
            return None
        if not hasattr(bulk, "opener") or bulk.opener(self._log) is None:
            return None
        return [(k, processes) for k in range(processes)]

    def _load_in_parts(
        self,
        bulk: BulkLoading,
        parts: list[tuple[int, int]],
        start: int,
        head: int,
        chunk_size: int,
        progress: Progress | None,
    ) -> int:
        """Part 0 here, the others each in a process of its own; the staging position moves
        to `head` once every part is in."""
        log.info("projection %s: loading in %d processes", self._name, len(parts))
        opener = bulk.opener(self._log)
        kind = type(self.projection)
        spawn = multiprocessing.get_context("spawn")  # nothing of this process's inherited
        with ProcessPoolExecutor(len(parts) - 1, mp_context=spawn) as helpers:
            others = [
                helpers.submit(_load_part, opener, kind, part, start, head, chunk_size)
                for part in parts[1:]
            ]
            read = _load_chunks(
                self.projection,
                self._name,
                bulk,
                self._log,
                start,
                head,
                chunk_size,
                progress,
                part=parts[0],
                others=others,
            )
            read += sum(other.result() for other in others)
        bulk.load(
            self.projection.name, self.projection.tables, [], [], expected=start, position=head
        )
        return read

    # ----- inside -----------------------------------------------------------------------------

    def _read(self, position: int, limit: int) -> Sequence[RecordedEvent]:
        try:
            return self._log.read_log(position + 1, limit)
        except Exception as error:  # an event the code cannot decode: find which
            if limit > 1:
                good = self._read_until_broken(position, limit)
                if good:
                    return good
            raise ProjectionFailed(
                self._name, position + 1, "undecodable event", f"{type(error).__name__}: {error}"
            ) from error

    def _read_until_broken(self, position: int, limit: int) -> list[RecordedEvent]:
        good: list[RecordedEvent] = []
        for _ in range(limit):
            try:
                one = self._log.read_log(position + 1, 1)
            except Exception:
                break
            if not one:
                break
            good += one
            position = one[0].position
        return good

    def _changes(self, page: Sequence[RecordedEvent]) -> list[RowChange]:
        return _apply(self.projection, self._name, page)

    def _commit(self, page: Sequence[RecordedEvent], position: int) -> None:
        changes = collapse(self._changes(page), self.projection.tables)
        self._store.commit(
            self.projection.name,
            changes,
            expected=position,
            position=page[-1].position,
            staging=self._staging,
        )

    def _apply_one_by_one(self, page: Sequence[RecordedEvent], position: int) -> None:
        """A batch failed: commit its events one at a time up to the one that fails."""
        self.projection.forget()
        for recorded in page:
            try:
                self._commit([recorded], position)
            except ProjectionStoreError as error:
                self.projection.forget()
                raise ProjectionFailed(
                    self._name, recorded.position, recorded.name, str(error)
                ) from error
            position = recorded.position


def _apply(projection: Projection, name: str, page: Sequence[RecordedEvent]) -> list[RowChange]:
    """The page's changes; an event the projection cannot apply stops it, named."""
    try:
        return projection.changes(page)
    except EventNotApplicable as error:
        projection.forget()
        failed = error.recorded
        raise ProjectionFailed(name, failed.position, failed.name, str(error)) from error


def _load_chunks(
    projection: Projection,
    name: str,
    bulk: BulkLoading,
    log_store: EventStore,
    after: int,
    upto: int,
    chunk_size: int,
    progress: Progress | None = None,
    part: tuple[int, int] | None = None,
    others: Sequence[Future[int]] = (),
) -> int:
    """The bulk load of the events after `after` up to `upto` (with `part`, of that part of
    the aggregates only, leaving the staging position alone). Returns events read. Stops
    as soon as one of `others` (the other parts' processes) has failed."""
    tables = projection.tables
    written: dict[str, set[Any]] = {}  # keys of the rows written so far, by table
    position, read = after, 0
    with _gc_paused(), ThreadPoolExecutor(1, "projection-write") as writer:
        writing: Future[None] | None = None
        for page in _read_ahead(bulk.log_pages(log_store, after, upto, chunk_size, part)):
            for other in others:
                if other.done() and other.exception() is not None:
                    other.result()  # raises it: no use finishing this part
            new, known = _split(collapse(_apply(projection, name, page), tables), written)
            if writing is not None:
                writing.result()  # the chunk before, committed (or its error)
            writing = writer.submit(
                bulk.load,
                projection.name,
                tables,
                new,
                known,
                expected=position,
                position=page[-1].position if part is None else None,
            )
            position = page[-1].position
            read += len(page)
            if progress is not None:
                progress(position, upto)
        if writing is not None:
            writing.result()
    return read


def _load_part(
    opener: tuple[Callable[[], Any], Callable[[], Any]],
    kind: Callable[[EventStore], Projection],
    part: tuple[int, int],
    after: int,
    upto: int,
    chunk_size: int,
) -> int:
    """In a helper process: one part of a rebuild's bulk load, on a log and a store of its
    own (opened as `opener` says). Returns events read."""
    open_log, open_store = opener
    log_store = open_log()
    try:
        store = open_store()
        try:
            projection = kind(log_store)
            name = projection.name + "__staging"
            return _load_chunks(
                projection, name, store, log_store, after, upto, chunk_size, None, part
            )
        finally:
            store.close()
    finally:
        log_store.close()


def _split(
    changes: Sequence[RowChange], written: dict[str, set[Any]]
) -> tuple[list[RowChange], list[RowChange]]:
    """(rows whose key this rebuild has not written yet, rows it may have written). A row
    that is never updated counts as new: a key written twice fails its batch, which then
    goes the exact way (where the second write does nothing, as on conflict)."""
    new: list[RowChange] = []
    known: list[RowChange] = []
    for change in changes:
        if not change.update:
            new.append(change)
            continue
        keys = written.setdefault(change.table, set())
        values = change.values
        key = (
            values[change.key[0]]
            if len(change.key) == 1
            else tuple(values[column] for column in change.key)
        )
        if key in keys:
            known.append(change)
        else:
            keys.add(key)
            new.append(change)
    return new, known


def _read_ahead(pages: Iterable[Sequence[RecordedEvent]]) -> Iterator[Sequence[RecordedEvent]]:
    """The pages, each next one read (and decoded) in a thread while this one is applied."""
    ahead = iter(pages)
    with ThreadPoolExecutor(1, "projection-read") as reader:
        coming = reader.submit(next, ahead, None)
        while (page := coming.result()) is not None:
            coming = reader.submit(next, ahead, None)
            yield page


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection for the length of a bulk load: it allocates millions of
    objects that live on for a while (aggregates, rows), and every full collection walks all
    of them (a third of a rebuild's time, measured). Nothing of the load's own makes cycles
    to collect. (A shorter GIL switch interval for the reading and writing threads was
    measured too, and changed nothing.)"""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def follow_all(
    runners: Sequence[ProjectionRunner],
    should_stop: Callable[[], bool],
    watcher: LogWatcher | None,
    *,
    poll_interval: float = 1.0,
    lag_warning: int = 10_000,
) -> None:
    """Keep every projection at the log's head until told to stop. Waits for the watcher's
    wake-up, but never longer than `poll_interval`: a lost notification only delays."""
    while not should_stop():
        for runner in runners:
            runner.catch_up()
            status = runner.status()
            if status.lag > lag_warning:
                log.warning("projection %s is %d events behind the log", status.name, status.lag)
        if should_stop():
            return
        if watcher is not None:
            watcher.wait(poll_interval)
        else:
            time.sleep(poll_interval)


def rebuild(
    make: Callable[[], Projection],
    log_store: EventStore,
    store: ProjectionStore,
    *,
    batch_size: int = 5000,
    progress: Progress | None = None,
    chunk_size: int = REBUILD_CHUNK,
    processes: int | None = None,
) -> int:
    """Rebuild one projection into fresh tables while the live ones keep serving, then swap
    them in one transaction. Returns the log position the new tables reflect. The staging
    tables are filled by the bulk path (`ProjectionRunner.load`: `chunk_size` events a
    transaction, in `processes` processes); `batch_size` is the exact path's, where the bulk
    path hands over."""
    projection = make()
    store.start_staging(projection.name, projection.tables)
    runner = ProjectionRunner(projection, log_store, store, batch_size=batch_size, staging=True)
    runner.load(progress, chunk_size, processes)
    return store.swap(projection.name, projection.tables, runner.changes_after)
