"""The execution module's loop: signals in, orders out, every live order followed.

`start()` reconciles with the exchange and then handles the signals this consumer had read but
not acknowledged before a stop (pending entries), before reading anything new. A signal's
entry is acknowledged only after its decision and orders are in the store, so a crash at any
point re-delivers it, and the decision's deterministic id turns the re-delivery into a no-op.
The same loop runs over Redis (`signal:{exchange}`, group `trading-engine-execution`) or the
in-process bus in simulations; only the subscriber differs.

`step()` does everything on the caller's thread: read, decide and send, then poll the live
orders when a poll is due (tests and backtests drive it so). `run()`, the live service, polls
on a thread of its own instead: a poll is a few exchange requests and a commit per fill (tens
of milliseconds here, hundreds against GMO), and a signal arriving meanwhile would wait for
it. The two threads share no state but what is built for it: the store keeps the account's
positions and live orders consistent under its own lock (app/execution/sole_writer.py), the service
changes its trading control one caller at a time, and orders sent are handed to the order
monitor through a queue that the polling thread empties before each poll.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar

from trading_engine.app.execution.order_monitor import OrderMonitor
from trading_engine.app.execution.reconciliation import ReconciliationReport, reconcile
from trading_engine.app.execution.service import ExecutionService
from trading_engine.app.execution.sole_writer import SoleWriterStore
from trading_engine.domain.order import Order
from trading_engine.domain.signal_age import STALE
from trading_engine.domain.values import OrderStatus
from trading_engine.ports.broker import Broker, BrokerFatal, PrivateEvents
from trading_engine.ports.clock import Clock
from trading_engine.ports.event_store import EventStore
from trading_engine.ports.signal_bus import SignalEntry, SignalSubscriber

log = logging.getLogger(__name__)


@dataclass
class ExecutionStats:
    signals: int = 0
    approved: int = 0
    refused: int = 0
    duplicates: int = 0
    orders: int = 0
    polls: int = 0
    # Refusals and exchange rejections by a bounded reason (a metric label): the risk or
    # sizing rule for a refusal, the exchange's error code for a rejected order.
    rejections: dict[str, int] = field(default_factory=dict)

    # A refusal's text carries numbers and operator notes; its rule is known by how the rule's
    # message starts (the trading state's, which then quote the operator) or by a phrase it
    # always contains (domain/risk.py refusal_for, domain/sizing.py plan_orders).
    REFUSAL_STARTS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("trading is HALTED", "halted"),
        ("trading is REDUCING", "reducing_only"),
        (STALE, "stale_signal"),
    )
    REFUSAL_PHRASES: ClassVar[tuple[tuple[str, str], ...]] = (
        ("above MAX_POSITION_SIZE", "max_position_size"),
        ("shorting is disabled", "shorting_disabled"),
        ("below the minimum size", "below_min_size"),
        ("no size/tick rules", "no_symbol_rules"),
    )

    def count_rejection(self, reason: str) -> None:
        self.rejections[reason] = self.rejections.get(reason, 0) + 1

    @classmethod
    def refusal_category(cls, reason: str | None) -> str:
        text = reason or ""
        for start, rule in cls.REFUSAL_STARTS:
            if text.startswith(start):
                return rule
        return next((rule for phrase, rule in cls.REFUSAL_PHRASES if phrase in text), "other")


class ExecutionLoop:
    def __init__(
        self,
        service: ExecutionService,
        monitor: OrderMonitor,
        subscriber: SignalSubscriber,
        store: EventStore,
        broker: Broker,
        *,
        exchange: str,
        symbols: list[str],
        poll_interval: float = 1.0,
        batch_size: int = 50,
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._service, self._monitor, self._subscriber = service, monitor, subscriber
        self._store, self._broker = store, broker
        self._exchange, self._symbols = exchange, symbols
        self._poll_interval, self._batch_size = poll_interval, batch_size
        self._monotonic = monotonic
        self._last_poll = float("-inf")
        self.stats = ExecutionStats()
        self.reconciliation: ReconciliationReport | None = None

    def start(self) -> int:
        """Reconcile, then finish what was pending. Returns the pending entries handled.
        (Also a restart after a server was away: what is kept in memory is read again.)"""
        self._service.reset_state()
        self.reconciliation = reconcile(
            self._store,
            self._broker,
            self._monitor,
            exchange=self._exchange,
            symbols=self._symbols,
            clock=self._clock,
        )
        pending = self._subscriber.recover()
        self._handle(pending)
        return len(pending)

    def step(self, block_ms: int = 200) -> int:
        """Read and handle one batch, then poll live orders if a poll is due. While orders
        are live, the read waits no longer than the next poll. Returns signals handled."""
        if self._live() and math.isfinite(self._poll_interval):
            # (no poll yet: due now; -inf would not convert to milliseconds)
            due_in = self._poll_interval - (self._monotonic() - self._last_poll)
            block_ms = min(block_ms, int(max(due_in, 0.0) * 1000))
        entries = self._subscriber.read(self._batch_size, block_ms)
        self._handle(entries)
        if self._monotonic() - self._last_poll >= self._poll_interval:
            self.poll()
        return len(entries)

    def poll(self) -> int:
        """Follow every live order once, and pick up late executions of finished ones."""
        self._last_poll = self._monotonic()
        self.stats.polls += 1
        live = self._monitor.poll(sweep=self._symbols)
        self._service.refresh_control()  # off the signal path: bounds what a watch could miss
        return live

    def record_pushed(self, events: PrivateEvents) -> int:
        """What the exchange pushed about the account (a private stream) recorded at once,
        with no request: the simulated exchange's fills in a backtest. Returns live orders."""
        return self._monitor.record_pushed(events)

    def run(self, should_stop: Callable[[], bool], block_ms: int = 200) -> ExecutionStats:
        """Until `should_stop()`: signals on this thread, order polls on another (when the
        store keeps the account consistent for both: a SoleWriterStore), so that no signal
        waits behind a poll. A poll's failure stops the loop here, as it would in `step`."""
        if not (isinstance(self._store, SoleWriterStore) and math.isfinite(self._poll_interval)):
            while not should_stop():
                self.step(block_ms)
            return self.stats
        poller = _Poller(self)
        poller.start()
        try:
            while not should_stop():
                poller.raise_failure()
                self._handle(self._subscriber.read(self._batch_size, block_ms), poller.track)
        finally:
            poller.stop()
        poller.raise_failure()
        return self.stats

    def finish(self, cancel_open_orders: bool) -> int:
        """At a stop: leave the open orders as they are (followed again at the next start), or
        cancel them. Returns the cancels asked."""
        if not cancel_open_orders:
            return 0
        return self._monitor.cancel_open("service stopped (CANCEL_OPEN_ORDERS_ON_STOP)")

    def close(self) -> None:
        """Release what the loop holds of its own (the trading control's watch)."""
        self._service.close()

    @property
    def broker(self) -> Broker:
        return self._broker

    @property
    def dead_letters(self) -> dict[str, int]:
        """Malformed signal entries set aside, by reason."""
        return dict(self._subscriber.stats.dead_letter_reasons)

    @property
    def live_orders(self) -> bool:
        return self._live()

    def _live(self) -> bool:
        return bool(self._monitor.tracked)

    def _handle(
        self, entries: Sequence[SignalEntry], track: Callable[[Order], None] | None = None
    ) -> None:
        track = track or self._monitor.track
        for entry in entries:
            try:
                outcome = self._service.handle(entry.signal, age=signal_age(entry))
            except BrokerFatal:
                # Stop without acknowledging: the signal comes back after the fix.
                log.critical("exchange error that needs an operator; stopping")
                raise
            self.stats.signals += 1
            if outcome.outcome == "approved":
                self.stats.approved += 1
            elif outcome.outcome == "refused":
                self.stats.refused += 1
                self.stats.count_rejection(ExecutionStats.refusal_category(outcome.reason))
            else:
                self.stats.duplicates += 1
            for order in outcome.orders:
                track(order)
                self.stats.orders += 1
                if order.status is OrderStatus.REJECTED:
                    self.stats.count_rejection(order.reject_code or "REJECTED")
            self._subscriber.ack([entry])


class _Poller:
    """The order polls of `ExecutionLoop.run`, on their own thread: one poll, then a wait of
    the poll interval, until stopped. Orders sent meanwhile are tracked before each poll."""

    def __init__(self, loop: ExecutionLoop) -> None:
        self._loop = loop
        self._sent: deque[Order] = deque()  # appended by the signal thread
        self._stopping = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="execution-polls", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def track(self, order: Order) -> None:
        self._sent.append(order)

    def _track_sent(self) -> None:
        while self._sent:
            self._loop._monitor.track(self._sent.popleft())

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._track_sent()
                self._loop.poll()
                self._stopping.wait(self._loop._poll_interval)
        except BaseException as error:  # raised on the signal thread (run_resilient there)
            self._failure = error

    def stop(self) -> None:
        """Ends after the poll in hand (bounded by the exchange's timeout); the orders sent
        since are tracked, for `finish` and the next start."""
        self._stopping.set()
        self._thread.join()
        self._track_sent()

    def raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure


def signal_age(entry: SignalEntry) -> timedelta | None:
    """How long ago, on the feed's clock, the signal's bar closed: its age when published
    plus the time the entry has waited in the stream since (None: the publisher did not say)."""
    if entry.age_at_publish is None:
        return None
    waited = 0.0 if entry.entered_at is None else max(time.monotonic() - entry.entered_at, 0.0)
    return entry.age_at_publish + timedelta(seconds=waited)
