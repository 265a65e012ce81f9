"""Risk limits and the trading state, worked by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from trading_engine.domain.risk import RiskLimits, TradingControl, TradingState, refusal_for
from trading_engine.domain.sizing import PlannedOrder
from trading_engine.domain.values import OrderType, Side

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
LIMITS = RiskLimits(
    max_position_size=Decimal("0.05"),
    max_drawdown_pct=Decimal(5),
    drawdown_window=timedelta(days=1),
    max_consecutive_losses=3,
    starting_equity=Decimal(1_000_000),
)


def leg(side: Side, size: str, leg_no: int = 0) -> PlannedOrder:
    return PlannedOrder(leg_no, side, OrderType.MARKET, Decimal(size), None, "OPEN")


def test_position_size_counts_current_plus_new() -> None:
    assert (
        refusal_for(TradingState.ACTIVE, "", Decimal("0.03"), [leg(Side.BUY, "0.02")], LIMITS)
        is None
    )
    reason = refusal_for(TradingState.ACTIVE, "", Decimal("0.04"), [leg(Side.BUY, "0.02")], LIMITS)
    assert reason is not None
    assert "0.06" in reason
    assert "MAX_POSITION_SIZE" in reason
    # a flip from long 0.04 to short 0.04 passes: the end size is within the limit
    flip = [leg(Side.SELL, "0.04"), leg(Side.SELL, "0.04", 1)]
    assert refusal_for(TradingState.ACTIVE, "", Decimal("0.04"), flip, LIMITS) is None


def test_reducing_lets_only_shrinking_orders_through() -> None:
    exit_long = [leg(Side.SELL, "0.03")]
    assert refusal_for(TradingState.REDUCING, "x", Decimal("0.03"), exit_long, LIMITS) is None
    reason = refusal_for(TradingState.REDUCING, "x", Decimal(0), [leg(Side.BUY, "0.01")], LIMITS)
    assert reason is not None
    assert reason.startswith("trading is REDUCING")
    flip = [leg(Side.SELL, "0.03"), leg(Side.SELL, "0.01", 1)]
    assert refusal_for(TradingState.REDUCING, "x", Decimal("0.03"), flip, LIMITS) is not None


def test_halted_lets_nothing_through_but_nothing_to_do_is_fine() -> None:
    reason = refusal_for(
        TradingState.HALTED, "kill", Decimal("0.03"), [leg(Side.SELL, "0.03")], LIMITS
    )
    assert reason == "trading is HALTED (kill)"
    assert refusal_for(TradingState.HALTED, "kill", Decimal(0), [], LIMITS) is None


def control() -> TradingControl:
    return TradingControl.open("gmo", at=T0)


def test_consecutive_losses_pause_into_reducing_and_a_win_resets_the_count() -> None:
    c = control()
    for pnl in (-1, -1, 5, -1, -1):
        c.record_result("BTC_JPY", Decimal(pnl), LIMITS, at=T0)
    assert c.state is TradingState.ACTIVE  # the win broke the streak: 2 in a row
    c.record_result("BTC_JPY", Decimal(-1), LIMITS, at=T0)
    assert c.state is TradingState.REDUCING
    assert "3 losing trades in a row" in c.reason
    c.resume("operator checked the strategy", at=T0)
    assert (c.state, c.losses_in_a_row) == (TradingState.ACTIVE, 0)


def test_drawdown_halts_and_lifts_when_the_window_rolls() -> None:
    c = control()
    # equity 1,000,000 → +20,000 (peak 1,020,000) → −52,000: 968,000, fall 52,000/1,020,000
    # = 5.098% ≥ 5%: halted
    c.record_result("BTC_JPY", Decimal(20_000), LIMITS, at=T0)
    c.record_result("BTC_JPY", Decimal(-52_000), LIMITS, at=T0 + timedelta(hours=1))
    assert c.state is TradingState.HALTED
    assert c.cause == "drawdown"
    assert c.drawdown_pct(LIMITS, now=T0 + timedelta(hours=1)).quantize(
        Decimal("0.001")
    ) == Decimal("5.098")
    # 23 h later the window still holds both results
    c.evaluate(LIMITS, now=T0 + timedelta(hours=23))
    assert c.state is TradingState.HALTED
    # a day after the peak, the window (T0+1h+... ) starts after the +20,000: the peak inside
    # it is the equity at its start, 1,020,000 before the loss... at T0+1d+30min the window
    # starts at T0+30min: equity there 1,020,000, then −52,000 → still 5.098%: halted
    c.evaluate(LIMITS, now=T0 + timedelta(days=1, minutes=30))
    assert c.state is TradingState.HALTED
    # once the loss itself leaves the window, nothing inside it fell: lifted
    c.evaluate(LIMITS, now=T0 + timedelta(days=1, hours=2))
    assert c.state is TradingState.ACTIVE
    assert c.cause == "window"


def test_kill_switch_halts_until_an_operator_resumes() -> None:
    c = control()
    c.halt("exchange looks wrong", at=T0)
    c.evaluate(LIMITS, now=T0 + timedelta(days=3))
    assert c.state is TradingState.HALTED  # a kill-switch halt never lifts by itself
    c.resume("checked", at=T0 + timedelta(days=3))
    assert c.state is TradingState.ACTIVE


def test_state_survives_replay() -> None:
    c = control()
    for pnl in (-1, -1, -1):
        c.record_result("BTC_JPY", Decimal(pnl), LIMITS, at=T0)
    replayed = None
    for event in c.collect_events():
        replayed = event.mutate(replayed)
    assert isinstance(replayed, TradingControl)
    assert (replayed.state, replayed.reason, replayed.losses_in_a_row) == (c.state, c.reason, 3)


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_drawdown_pct"):
        RiskLimits(Decimal(1), Decimal(0), timedelta(days=1), 3, Decimal(1))


def test_results_older_than_the_window_are_folded_not_kept() -> None:
    # A year of round trips must not make the control (loaded on every signal) a year long.
    # Window: LIMITS.drawdown_window. Results a day apart: only those inside the window stay
    # listed; the rest are one sum, and the drawdown is what the full history gives.
    folded = control()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    pnls = [Decimal(v) for v in ("5000", "-2000", "3000", "-1000", "-4000")]
    for n, pnl in enumerate(pnls):
        folded.record_result("BTC_JPY", pnl, LIMITS, at=t0 + timedelta(days=n))
    now = t0 + timedelta(days=len(pnls) - 1)
    kept = [pnl for at, pnl in folded.results]
    assert len(kept) < len(pnls)
    assert folded.settled_pnl + sum(kept) == sum(pnls)
    # by hand: equity before the window = start + every result before it; the window holds
    # the results from `now - window` on; the drawdown is the fall from their peak
    start = now - LIMITS.drawdown_window
    before = LIMITS.starting_equity + sum(
        p for n, p in enumerate(pnls) if t0 + timedelta(days=n) < start
    )
    equity, peak = before, before
    for n, pnl in enumerate(pnls):
        if start <= t0 + timedelta(days=n) <= now:
            equity += pnl
            peak = max(peak, equity)
    expected = (peak - equity) / peak * 100  # (1,006,000 − 1,001,000) / 1,006,000 = 0.497 %
    assert round(folded.drawdown_pct(LIMITS, now=now), 20) == round(expected, 20)
