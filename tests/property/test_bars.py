"""Bar building against a plain reference: group trades by bucket, fill gaps with flat bars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from trading_engine.domain.bars import BarBuilder, MultiTimeframeBars, bucket_start
from trading_engine.domain.market import Trade
from trading_engine.domain.values import Exchange, Symbol, Timeframe

EX, SYM = Exchange("gmo"), Symbol("BTC_JPY")
T0 = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
M1, M5 = Timeframe("1m"), Timeframe("5m")

offsets_ms = st.lists(st.integers(0, 30 * 60 * 1000), min_size=1, max_size=120)
prices = st.integers(14_000_000, 16_000_000).map(Decimal)
sizes = st.integers(1, 5000).map(lambda n: Decimal(n) / 1000)


@st.composite
def trade_streams(draw: st.DrawFn) -> list[Trade]:
    times = sorted(draw(offsets_ms))
    return [
        Trade(
            EX,
            SYM,
            draw(st.sampled_from(["BUY", "SELL"])),
            draw(prices),
            draw(sizes),
            T0 + timedelta(milliseconds=ms),
        )
        for ms in times
    ]


def reference_bars(trades: list[Trade], tf: Timeframe, until: datetime) -> list[tuple]:
    """Every bucket from the first trade's up to (not including) the bucket of `until`."""
    step = timedelta(seconds=tf.seconds)
    groups: dict[datetime, list[Trade]] = {}
    for trade in trades:
        groups.setdefault(bucket_start(trade.timestamp, tf), []).append(trade)
    bars, start, last_close = [], min(groups), None
    while start < bucket_start(until, tf):
        group = groups.get(start)
        if group:
            high, low = max(t.price for t in group), min(t.price for t in group)
            volume = sum(t.size for t in group)
            bar = (start, group[0].price, high, low, group[-1].price, volume)
            last_close = group[-1].price
        else:
            bar = (start, last_close, last_close, last_close, last_close, Decimal(0))
        bars.append(bar)
        start += step
    return bars


def as_tuples(bars) -> list[tuple]:
    return [(b.timestamp, b.open, b.high, b.low, b.close, b.volume) for b in bars]


@settings(max_examples=150, deadline=None)
@given(trade_streams(), st.sampled_from([Timeframe("1s"), M1, M5, Timeframe("15m")]))
def test_bars_match_the_reference_and_close_on_later_trades(trades, tf) -> None:
    builder = BarBuilder(EX, SYM, tf)
    closed = []
    for trade in trades:
        update = builder.add(trade)
        assert not update.late
        closed.extend(update.bars())
    # only bars before the last trade's bucket are closed by trades alone
    assert as_tuples(closed) == reference_bars(trades, tf, trades[-1].timestamp)
    end = trades[-1].timestamp + timedelta(hours=1)
    closed.extend(builder.tick(end).bars())
    assert as_tuples(closed) == reference_bars(trades, tf, end)
    assert sum(b.volume for b in closed) == sum(t.size for t in trades)


@settings(max_examples=100, deadline=None)
@given(trade_streams(), st.data())
def test_ticks_between_trades_do_not_change_the_bars(trades, data) -> None:
    plain, ticked = BarBuilder(EX, SYM, M1), BarBuilder(EX, SYM, M1)
    plain_bars, ticked_bars = [], []
    previous = trades[0].timestamp
    for trade in trades:
        # any tick at or before the next trade's time can only close what is really over
        gap_ms = int((trade.timestamp - previous).total_seconds() * 1000)
        at = previous + timedelta(milliseconds=data.draw(st.integers(0, max(gap_ms, 0))))
        ticked_bars.extend(ticked.tick(at).bars())
        ticked_bars.extend(ticked.add(trade).bars())
        plain_bars.extend(plain.add(trade).bars())
        previous = trade.timestamp
    end = trades[-1].timestamp + timedelta(minutes=10)
    assert as_tuples(plain_bars + list(plain.tick(end).bars())) == as_tuples(
        ticked_bars + list(ticked.tick(end).bars())
    )


@settings(max_examples=100, deadline=None)
@given(trade_streams(), st.lists(st.integers(0, 119), max_size=10))
def test_late_trades_are_counted_never_merged(trades, late_picks) -> None:
    builder = BarBuilder(EX, SYM, M1)
    closed, accepted, late = [], [], 0
    for index, trade in enumerate(trades):
        update = builder.add(trade)
        closed.extend(update.bars())
        accepted.append(trade)
        for pick in late_picks:  # re-send an older trade after its bar may have closed
            if pick < index and builder.is_late(trades[pick]):
                assert builder.add(trades[pick]).late
                late += 1
    closed.extend(builder.tick(trades[-1].timestamp + timedelta(hours=1)).bars())
    assert builder.late_trades == late
    assert as_tuples(closed) == reference_bars(
        accepted, M1, trades[-1].timestamp + timedelta(hours=1)
    )


@settings(max_examples=100, deadline=None)
@given(trade_streams())
def test_timeframes_agree_and_replays_are_identical(trades) -> None:
    def run() -> dict[Timeframe, list]:
        book = MultiTimeframeBars(EX, SYM, [M1, M5])
        bars = [bar for trade in trades for bar in book.add(trade).bars()]
        bars.extend(book.tick(trades[-1].timestamp + timedelta(hours=1)).bars())
        return {tf: [b for b in bars if b.timeframe == tf] for tf in (M1, M5)}

    first, second = run(), run()
    assert first == second
    # a 5m bar is the roll-up of the traded 1m bars in it (flat 1m bars carry no trades),
    # or flat at the last close if none traded
    rolled: dict[datetime, list] = {}
    for bar in first[M1]:
        rolled.setdefault(bucket_start(bar.timestamp, M5), []).append(bar)
    expected, last_close = [], None
    for start, group in sorted(rolled.items()):
        traded = [b for b in group if b.volume > 0]
        if traded:
            high, low = max(b.high for b in traded), min(b.low for b in traded)
            volume = sum(b.volume for b in traded)
            expected.append((start, traded[0].open, high, low, traded[-1].close, volume))
            last_close = traded[-1].close
        else:
            expected.append((start, last_close, last_close, last_close, last_close, Decimal(0)))
    # the final tick closed 1m bars past the last whole 5m bar: compare the closed buckets
    assert as_tuples(first[M5]) == expected[: len(first[M5])]
    assert len(expected) - len(first[M5]) <= 1
