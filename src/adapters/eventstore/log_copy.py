"""Appending one store's whole log to another, as recorded: a backtest runs on an in-memory
store (it is the only writer of its run, so nothing needs to be on disk until the end) and
appends its log to the run's database in large transactions when it closes. Each event keeps
its aggregate, version, topic and encoded state; the target numbers the events after its own
and extends its hash chain over them, exactly as if they had been saved there one by one."""

from __future__ import annotations

from eventsourcing.persistence import StoredEvent

from trading_engine.adapters.eventstore.application import EventSourcedStore

BATCH = 10_000  # events per transaction


def append_log(source: EventSourcedStore, target: EventSourcedStore, batch: int = BATCH) -> int:
    """Every event of `source`, in its order, appended to `target`; returns how many."""
    copied, start = 0, 1
    while True:
        notifications = source.recorder.select_notifications(start=start, limit=batch)
        if not notifications:
            return copied
        target.recorder.insert_events(
            [
                StoredEvent(
                    originator_id=n.originator_id,
                    originator_version=n.originator_version,
                    topic=n.topic,
                    state=n.state,
                )
                for n in notifications
            ]
        )
        copied += len(notifications)
        start = notifications[-1].id + 1
