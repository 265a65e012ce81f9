"""In-memory event store (the library's POPO recorders): for unit tests and throwaway runs."""

from __future__ import annotations

from adapters.eventstore.application import EventSourcedStore


def memory_event_store() -> EventSourcedStore:
    return EventSourcedStore({"PERSISTENCE_MODULE": "eventsourcing.popo"})
