"""Risk: what may be traded now, and the trading state that the limits and the operator move.

Trading has one state per exchange account, kept as an event-sourced `TradingControl`, so it
survives a restart and every change has a time and a reason in the log:

* ACTIVE: everything the limits allow passes.
* REDUCING: only orders that shrink a position pass. Entered after `max_consecutive_losses`
  losing round trips in a row (a pause: the strategy may still get out, not further in).
* HALTED: nothing passes. Entered by the kill switch, or when the drawdown over the window
  reaches `max_drawdown_pct`; a drawdown halt lifts by itself once the losing results have
  rolled out of the window, a kill-switch halt only by an operator.

Equity for the drawdown is the starting equity plus realized PnL (fees included); the peak is
the highest equity inside the window (or since the last resume, whichever is later).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.sizing import PlannedOrder
from trading_engine.domain.values import (
    ZERO,
    Side,
    _ParsedEnum,
    aware,
    identifier,
    money_context,
    text_of,
)

CONTROL_NAMESPACE = UUID("3c5e8a1f-92b4-5d07-a6e3-7f1b2c9d4e80")
HUNDRED = Decimal(100)


class TradingState(_ParsedEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_position_size: Decimal
    max_drawdown_pct: Decimal
    drawdown_window: timedelta
    max_consecutive_losses: int
    starting_equity: Decimal

    def __post_init__(self) -> None:
        if self.max_position_size <= ZERO:
            raise InvalidValue("max_position_size", self.max_position_size, "must be > 0")
        if not ZERO < self.max_drawdown_pct <= HUNDRED:
            raise InvalidValue("max_drawdown_pct", self.max_drawdown_pct, "must be in (0, 100]")
        if self.drawdown_window <= timedelta(0):
            raise InvalidValue("drawdown_window", self.drawdown_window, "must be positive")
        if self.max_consecutive_losses < 1:
            raise InvalidValue(
                "max_consecutive_losses", self.max_consecutive_losses, "must be >= 1"
            )
        if self.starting_equity <= ZERO:
            raise InvalidValue("starting_equity", self.starting_equity, "must be > 0")


def control_id_for(exchange: str) -> UUID:
    return uuid5(CONTROL_NAMESPACE, identifier("exchange", exchange))


def refusal_for(
    state: TradingState,
    state_reason: str,
    position: Decimal,
    orders: list[PlannedOrder],
    limits: RiskLimits,
) -> str | None:
    """Why these orders may not go out now, or None. `position` is signed (long > 0)."""
    if not orders:
        return None
    if state is TradingState.HALTED:
        return f"trading is HALTED ({state_reason})"
    after = position
    with money_context():
        for order in orders:
            before = after
            after = after + order.size if order.side is Side.BUY else after - order.size
            grows = abs(after) > abs(before) or (before * after < ZERO)
            if state is TradingState.REDUCING and grows:
                return (
                    f"trading is REDUCING ({state_reason}): only orders that shrink the position "
                    f"pass; {order.side} {order.size} would take it from {before} to {after}"
                )
    if abs(after) > limits.max_position_size and abs(after) > abs(position):
        return (
            f"position would be {abs(after)} (now {abs(position)}), above MAX_POSITION_SIZE "
            f"{limits.max_position_size}"
        )
    return None


class TradingControl(Aggregate):
    """The trading state of one exchange account and the results that move it."""

    class Opened(Aggregate.Created):
        exchange: str

    class ResultRecorded(Aggregate.Event):
        """A round trip (or part of one) closed with this realized PnL, fees included."""

        symbol: str
        pnl: Decimal
        at: datetime
        # Results before this time can no longer fall inside the drawdown window: they are
        # summed into `settled_pnl` and dropped, so the aggregate stays small however long it
        # trades (None in events recorded before this existed: nothing is folded).
        settle_before: datetime | None = None

        def apply(self, control: TradingControl) -> None:
            control.results.append((self.at, self.pnl))
            control.losses_in_a_row = control.losses_in_a_row + 1 if self.pnl < ZERO else 0
            if self.settle_before is not None:
                cutoff = self.settle_before
                with money_context():
                    old = sum((p for t, p in control.results if t < cutoff), ZERO)
                    control.settled_pnl = control.settled_pnl + old
                control.results = [(t, p) for t, p in control.results if t >= cutoff]

    class StateChanged(Aggregate.Event):
        state: str
        reason: str
        cause: str  # "drawdown", "consecutive_losses", "kill_switch", "operator", "window"

        def apply(self, control: TradingControl) -> None:
            control.state = TradingState(self.state)
            control.reason = self.reason
            control.cause = self.cause
            if control.state is TradingState.ACTIVE:
                control.losses_in_a_row = 0
                control.baseline_at = self.timestamp

    settled_pnl = ZERO  # results older than any window still to be judged (class default:
    # snapshots taken before it existed still load)

    def __init__(self, exchange: str) -> None:
        self.exchange = exchange
        self.state = TradingState.ACTIVE
        self.reason = ""
        self.cause = ""
        self.results: list[tuple[datetime, Decimal]] = []
        self.losses_in_a_row = 0
        self.baseline_at: datetime | None = None

    @classmethod
    def open(cls, exchange: str, *, at: datetime) -> TradingControl:
        return cls._create(
            cls.Opened, id=control_id_for(exchange), timestamp=aware("at", at), exchange=exchange
        )

    # ----- commands -------------------------------------------------------------------------

    def record_result(self, symbol: str, pnl: Decimal, limits: RiskLimits, *, at: datetime) -> None:
        """A realized result; moves the state if a limit is now reached."""
        self.trigger_event(
            self.ResultRecorded,
            timestamp=aware("at", at),
            symbol=symbol,
            pnl=pnl,
            at=at,
            settle_before=at - limits.drawdown_window,
        )
        self.evaluate(limits, now=at)

    def evaluate(self, limits: RiskLimits, *, now: datetime) -> None:
        """Apply the limits to the results as of `now` (also lifts a drawdown halt once the
        window has rolled past it)."""
        drawdown = self.drawdown_pct(limits, now=now)
        if self.state is not TradingState.HALTED and drawdown >= limits.max_drawdown_pct:
            self._change(
                TradingState.HALTED,
                f"drawdown {drawdown:.2f}% over {limits.drawdown_window} reached "
                f"MAX_DRAWDOWN_PCT {limits.max_drawdown_pct}",
                "drawdown",
                now,
            )
        elif (
            self.state is TradingState.HALTED
            and self.cause == "drawdown"
            and drawdown < limits.max_drawdown_pct
        ):
            self._change(
                TradingState.ACTIVE,
                f"drawdown window rolled: {drawdown:.2f}% now",
                "window",
                now,
            )
        elif (
            self.state is TradingState.ACTIVE
            and self.losses_in_a_row >= limits.max_consecutive_losses
        ):
            self._change(
                TradingState.REDUCING,
                f"{self.losses_in_a_row} losing trades in a row reached MAX_CONSECUTIVE_LOSSES "
                f"{limits.max_consecutive_losses}",
                "consecutive_losses",
                now,
            )

    def halt(self, reason: str, *, at: datetime) -> None:
        """The kill switch."""
        self._change(TradingState.HALTED, reason or "kill switch", "kill_switch", at)

    def reduce_only(self, reason: str, *, at: datetime) -> None:
        self._change(TradingState.REDUCING, reason or "operator", "operator", at)

    def resume(self, reason: str, *, at: datetime) -> None:
        """An operator lifts any halt or pause; drawdown counts afresh from now."""
        self._change(TradingState.ACTIVE, reason or "operator resumed", "operator", at)

    def _change(self, state: TradingState, reason: str, cause: str, at: datetime) -> None:
        if state is self.state and cause == self.cause:
            return
        self.trigger_event(
            self.StateChanged,
            timestamp=aware("at", at),
            state=state.value,
            reason=text_of(reason),
            cause=cause,
        )

    # ----- derived --------------------------------------------------------------------------

    def drawdown_pct(self, limits: RiskLimits, *, now: datetime) -> Decimal:
        """Peak-to-now fall of equity inside the window, in percent of the peak."""
        start = now - limits.drawdown_window
        if self.baseline_at is not None and self.baseline_at > start:
            start = self.baseline_at
        with money_context():
            before = sum((p for t, p in self.results if t < start), ZERO)
            equity = limits.starting_equity + self.settled_pnl + before
            peak = equity
            for at, pnl in self.results:
                if start <= at <= now:
                    equity += pnl
                    peak = max(peak, equity)
            if peak <= ZERO:
                return HUNDRED
            return (peak - equity) / peak * HUNDRED
