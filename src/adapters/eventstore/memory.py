"""In-memory event store (the library's POPO recorders): for unit tests and throwaway runs.

It keeps the hash chain too (chain.py), computed under the recorder's lock as events are
appended, so the event-store contract is the same on every store; nothing outside the
process can change its events, so here the chain only keeps the behaviour uniform.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.popo import POPOApplicationRecorder

from trading_engine.adapters.eventstore.application import EventSourcedStore
from trading_engine.adapters.eventstore.chain import GENESIS, Link, link_hash


class ChainedPOPOApplicationRecorder(POPOApplicationRecorder):
    def __init__(self) -> None:
        super().__init__()
        self._links: list[Link] = []

    def _update_table(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._update_table(stored_events, **kwargs)  # under the recorder's lock
        last = self._links[-1] if self._links else None
        previous, previous_hash = (last.position, last.hash) if last else (None, GENESIS)
        for position, s in zip(ids or (), stored_events, strict=True):
            previous_hash = link_hash(
                previous_hash, position, s.originator_id, s.originator_version, s.topic, s.state
            )
            self._links.append(Link(position, previous, previous_hash))
            previous = position
        return ids

    def last_link(self) -> Link | None:
        with self._database_lock:
            return self._links[-1] if self._links else None

    def select_links(self, after: int, stop: int, limit: int) -> Sequence[Link]:
        with self._database_lock:
            # positions are 1..n without gaps here: link i sits at index i - 1
            return self._links[after : min(stop, after + limit)]


def memory_event_store(*, chained: bool = True) -> EventSourcedStore:
    """`chained=False`: no hash chain (`verify_chain` says so), for a log that is only ever
    appended to a store that chains it (a backtest's, `log_copy.append_log`): hashing each
    event twice was a twentieth of a backtest."""
    env = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if chained:
        env["APPLICATION_RECORDER_TOPIC"] = (
            "trading_engine.adapters.eventstore.memory:ChainedPOPOApplicationRecorder"
        )
    return EventSourcedStore(env)
