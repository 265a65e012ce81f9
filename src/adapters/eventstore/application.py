"""The event store: an eventsourcing `Application` whose persistence the caller chooses.

The persistence module (popo / sqlite / postgres) is picked by the `env` the sibling modules
`memory.py`, `sqlite.py` and `postgres.py` build; this class adds what the trading engine
needs on top: orjson transcoding, domain errors instead of database errors, and a decoded
view of the global log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import ApplicationRecorder, IntegrityError, Transcoder
from eventsourcing.popo import POPOFactory
from eventsourcing.utils import resolve_topic

import trading_engine.adapters.eventstore.old_topics  # noqa: F401  (old logs' topics)
from trading_engine.adapters.eventstore import chain
from trading_engine.adapters.eventstore.transcoder import OrjsonTranscoder
from trading_engine.domain.errors import DuplicateOrder, UnknownOrder
from trading_engine.domain.order import Order
from trading_engine.domain.position import Position, position_id_for
from trading_engine.ports.event_store import ChainReport, ConcurrencyConflict, RecordedEvent


class EventSourcedStore(Application[UUID]):
    """Orders and positions in one append-only log (tables `ledger_events` / `stored_events`)."""

    name = "ledger"
    # A position gets one event per fill, forever; a snapshot every 100 events keeps loading
    # it (once per fill) bounded. Orders are short-lived and are always replayed in full.
    snapshotting_intervals = {Position: 100}

    def __init__(self, env: Mapping[str, str]) -> None:
        # Positions and trading controls are loaded on every fill and every signal: keep the
        # last state of each in memory and read only the events recorded since (the library
        # fast-forwards a cached aggregate with one query, so other writers are seen).
        super().__init__(env={"AGGREGATE_CACHE_MAXSIZE": "10000", **env})
        self._sole_writer = False

    def construct_transcoder(self) -> Transcoder:
        return OrjsonTranscoder()

    def construct_recorder(self) -> ApplicationRecorder:
        # The library's SQLite and PostgreSQL factories honour APPLICATION_RECORDER_TOPIC,
        # its in-memory one does not: do it here, for the in-memory store's chained recorder.
        topic = self.env.get("APPLICATION_RECORDER_TOPIC")
        if topic and isinstance(self.factory, POPOFactory):
            recorder_class = resolve_topic(topic)
            assert issubclass(recorder_class, ApplicationRecorder)
            return recorder_class()
        return super().construct_recorder()

    def hand_out_cached_state(self) -> None:
        """Loads return the cached aggregate itself instead of a deep copy of it. Only for a
        store with one writer that saves every change it makes or stops (a backtest's own
        store): a change made and not saved would otherwise be seen by the next load. The
        copies were a fifth of a backtest's time (a position copied on every load). With no
        other writer the cache is never behind either: no query for newer events per load
        (`save` puts what it saved in the cache)."""
        self.repository.deepcopy_from_cache = False
        self.repository.fastforward = False
        self._sole_writer = True
        # Nor snapshots: every load is a cache hit, and each snapshot replayed its position's
        # last 100 events from the log (a log appended elsewhere leaves its snapshots here).
        self.snapshotting_intervals = {}

    @property
    def sole_writer(self) -> bool:
        """True once `hand_out_cached_state` was called: what this store caches is the log."""
        return self._sole_writer

    def evict(self, aggregate_id: UUID) -> None:
        """Drop one aggregate from the cache (its state there may be ahead of the log: a save
        of it failed), so that the next load reads it from the log."""
        cache = self.repository.cache
        if cache is not None:
            with contextlib.suppress(KeyError):
                cache.get(aggregate_id, evict=True)

    # ----- writing --------------------------------------------------------------------------

    def save(self, *aggregates: Order | Position, **kwargs: Any) -> Any:  # type: ignore[override]
        new_orders = [agg for agg in aggregates if isinstance(agg, Order) and _is_new(agg)]
        try:
            return self._save(aggregates, kwargs)
        except IntegrityError as error:
            for order in new_orders:
                if self._exists(order.id):
                    raise DuplicateOrder(order.id, order.signal_id) from error
            # Anything else new that already exists (a decision recorded by another process)
            # or changed since loaded is a stale write: the caller reloads and retries.
            names = ", ".join(f"{type(a).__name__} {a.id} v{a.version}" for a in aggregates)
            raise ConcurrencyConflict(
                f"stale write: another writer changed one of [{names}] first; reload and retry"
            ) from error

    def _save(self, aggregates: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """`Application.save` without its per-object `isinstance` checks against runtime
        Protocols (~20 µs each, a tenth of a backtest): only aggregates are saved here."""
        processing = ProcessingEvent[UUID]()
        for aggregate in aggregates:
            if aggregate is not None:
                processing.events.extend(aggregate.collect_events())
                processing.aggregates[aggregate.id] = aggregate
        processing.saved_kwargs.update(kwargs)
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)
        return recordings

    # ----- reading --------------------------------------------------------------------------

    def get_order(self, order_id: UUID) -> Order:
        if self._sole_writer:  # the cache holds what this store last saved: no replay
            try:
                order = self.repository.get(order_id, projector_func=_replay)
            except AggregateNotFoundError:
                raise UnknownOrder(order_id) from None
            assert isinstance(order, Order)
            return order
        # Orders are never snapshotted: replaying their few events directly skips the
        # repository's snapshot lookup, a query per load (575 → 376 µs per order measured).
        order = None
        for event in self.events.get(order_id):
            order = event.mutate(order)
        if not isinstance(order, Order):
            raise UnknownOrder(order_id)
        return order

    def find(self, aggregate_id: UUID) -> Any | None:
        try:
            return self.repository.get(aggregate_id, projector_func=_replay)
        except AggregateNotFoundError:
            return None

    def state_at(self, aggregate_id: UUID, version: int) -> Any:
        return self.repository.get(aggregate_id, version=version, projector_func=_replay)

    def find_position(self, exchange: str, symbol: str) -> Position | None:
        try:
            position = self.repository.get(
                position_id_for(exchange, symbol), projector_func=_replay
            )
        except AggregateNotFoundError:
            return None
        assert isinstance(position, Position)
        return position

    def events_of(self, aggregate_id: UUID) -> Sequence[Any]:
        return list(self.events.get(aggregate_id))

    def read_log(self, start: int = 1, limit: int = 1000) -> Sequence[RecordedEvent]:
        notifications = self.recorder.select_notifications(start=start, limit=limit)
        return [
            RecordedEvent(
                position=n.id,
                aggregate_id=UUID(str(n.originator_id)),
                version=n.originator_version,
                topic=n.topic,
                event=self.mapper.to_domain_event(n),
            )
            for n in notifications
        ]

    def max_position(self) -> int:
        return self.recorder.max_notification_id() or 0

    # ----- the hash chain (issue 7, chain.py) ------------------------------------------------

    def chain_head(self) -> tuple[int, str] | None:
        if not hasattr(self.recorder, "last_link"):
            return None
        return chain.head_of(self.recorder)  # type: ignore[arg-type]

    def verify_chain(self, progress: Callable[[int, int], None] | None = None) -> ChainReport:
        if not hasattr(self.recorder, "select_links"):
            return ChainReport(
                ok=False,
                checked=0,
                head=None,
                reason=f"this store's recorder ({type(self.recorder).__name__}) keeps no chain",
            )
        return chain.verify(self.recorder, progress)  # type: ignore[arg-type]

    def _exists(self, aggregate_id: UUID) -> bool:
        return bool(self.recorder.select_events(aggregate_id, limit=1))


def _replay(aggregate: Any, events: Iterable[Any]) -> Any:
    """The library's projector without its per-event `isinstance` check against a runtime
    Protocol (an `assert`, ~50 µs an event unless Python runs with -O): a position of a few
    dozen fills since its snapshot was loaded in milliseconds, on every fill."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def _is_new(aggregate: Order | Position) -> bool:
    pending = aggregate.pending_events
    return bool(pending) and pending[0].originator_version == aggregate.INITIAL_VERSION
