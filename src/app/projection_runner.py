"""Runs projections over the event log: catch up, follow, rebuild, report.

Each batch of events becomes one `ProjectionStore.commit`: the rows and the projection's new
position together. A projection that crashes resumes from its stored position; one that
meets an event it cannot apply commits everything before that event and stops with the
event's position and the reason; it never skips it. After a fix it resumes from that event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.projections import EventNotApplicable, Projection
from ports.event_store import EventStore, RecordedEvent
from ports.projections import (
    LogWatcher,
    PositionMoved,
    ProjectionStore,
    ProjectionStoreError,
    RowChange,
)

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (position reached, head)


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
        key = (change.table, *(change.values[c] for c in change.key))
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
        try:
            return self.projection.changes(page)
        except EventNotApplicable as error:
            self.projection.forget()
            failed = error.recorded
            raise ProjectionFailed(self._name, failed.position, failed.name, str(error)) from error

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
) -> int:
    """Rebuild one projection into fresh tables while the live ones keep serving, then swap
    them in one transaction. Returns the log position the new tables reflect."""
    projection = make()
    store.start_staging(projection.name, projection.tables)
    runner = ProjectionRunner(projection, log_store, store, batch_size=batch_size, staging=True)
    runner.catch_up(progress)
    return store.swap(projection.name, projection.tables, runner.changes_after)
