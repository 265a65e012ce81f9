"""The seeded synthetic market: reproducible, well-formed, and lively enough for strategies."""

from __future__ import annotations

import hashlib
import inspect
import itertools
import statistics
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from trading_engine.adapters.marketdata.synthetic import Regime, SyntheticMarket, synthetic_trades
from trading_engine.adapters.marketdata.trade_files import format_row, read_gmo_trades
from trading_engine.domain.market import Trade
from trading_engine.domain.values import Exchange, Side, Symbol

START = datetime(2025, 7, 1, 21, tzinfo=UTC)


def trades(seed: int = 7, count: int = 20_000, **options) -> list[Trade]:
    return list(synthetic_trades(start=START, seed=seed, count=count, **options))


@pytest.fixture(scope="module")
def market() -> tuple[SyntheticMarket, list[Trade]]:
    generator = SyntheticMarket(start=START, seed=7, count=20_000)
    return generator, list(generator)


def test_same_seed_same_trades() -> None:
    assert trades(seed=11, count=3_000) == trades(seed=11, count=3_000)


def test_different_seed_different_trades() -> None:
    a, b = trades(seed=11, count=500), trades(seed=12, count=500)
    assert a != b
    assert [t.price for t in a] != [t.price for t in b]
    assert [t.timestamp for t in a] != [t.timestamp for t in b]


def test_the_output_for_a_seed_never_changes() -> None:
    """Pinned bytes: the same on every machine and Python version. If you change the model on
    purpose, update the digest and regenerate src/samples/gmo_BTC_JPY_sample.csv.gz."""
    digest = hashlib.sha256("".join(map(format_row, trades(seed=7, count=5_000))).encode())
    assert digest.hexdigest() == PINNED_SEED_7_FIRST_5000


PINNED_SEED_7_FIRST_5000 = "813b3c16910dee5ae81efe91efeb064e62382182d8d508446196ca4ddfa4f3d3"


def test_a_longer_run_starts_with_the_shorter_one() -> None:
    assert trades(seed=5, count=4_000)[:1_000] == trades(seed=5, count=1_000)


def test_is_lazy() -> None:
    generated = synthetic_trades(start=START, seed=1, count=10**12)
    assert inspect.isgenerator(generated) or iter(generated) is generated
    assert len(list(itertools.islice(generated, 5))) == 5


def test_shape_of_each_trade(market: tuple[SyntheticMarket, list[Trade]]) -> None:
    _, generated = market
    assert len(generated) == 20_000
    assert generated[0].timestamp == START
    assert generated[0].price == Decimal("15000000")
    assert {t.exchange for t in generated} == {Exchange("gmo")}
    assert {t.symbol for t in generated} == {Symbol("BTC_JPY")}
    assert {t.side for t in generated} == {Side.BUY, Side.SELL}
    assert all(t.price > 0 and t.price == t.price.to_integral_value() for t in generated)
    assert all(t.size > 0 and t.size % Decimal("0.0001") == 0 for t in generated)
    assert all(t.timestamp.microsecond % 1000 == 0 for t in generated)  # GMO's milliseconds
    buys = sum(t.side is Side.BUY for t in generated)
    assert 0.4 < buys / len(generated) < 0.6


def test_timestamps_never_decrease(market: tuple[SyntheticMarket, list[Trade]]) -> None:
    _, generated = market
    gaps = [(b.timestamp - a.timestamp) for a, b in itertools.pairwise(generated)]
    assert min(gaps) == timedelta(0)  # sweeps share a millisecond
    mean_ms = statistics.mean(
        g / timedelta(milliseconds=1) for g in gaps if g < timedelta(minutes=1)
    )
    assert 350 < mean_ms < 650  # about mean_interval_ms, sweeps and quiet spells aside


def test_quiet_spells_leave_empty_minutes(market: tuple[SyntheticMarket, list[Trade]]) -> None:
    _, generated = market
    long_gaps = [
        b.timestamp - a.timestamp
        for a, b in itertools.pairwise(generated)
        if b.timestamp - a.timestamp > timedelta(minutes=2)
    ]
    assert len(long_gaps) >= 1
    assert max(long_gaps) <= timedelta(minutes=8)


def test_all_three_regimes_occur(market: tuple[SyntheticMarket, list[Trade]]) -> None:
    generator, generated = market
    assert {span.regime for span in generator.regimes} == set(Regime)
    starts = [span.start for span in generator.regimes]
    assert starts == sorted(starts)
    assert all(START <= s <= generated[-1].timestamp for s in starts)


def test_trends_drift_their_way() -> None:
    """Over many regimes, prices rise in up-trends and fall in down-trends on average."""
    generator = SyntheticMarket(start=START, seed=3, count=150_000)
    generated = list(generator)
    moves: dict[Regime, list[float]] = {regime: [] for regime in Regime}
    bounds = [span.first_trade for span in generator.regimes[1:]] + [len(generated)]
    for span, end in zip(generator.regimes, bounds, strict=True):
        if end - span.first_trade > 100:
            first, last = generated[span.first_trade].price, generated[end - 1].price
            moves[span.regime].append(float(last / first) - 1)
    assert all(len(m) >= 5 for m in moves.values()), {k: len(v) for k, v in moves.items()}
    assert statistics.mean(moves[Regime.TRENDING_UP]) > 0.002
    assert statistics.mean(moves[Regime.TRENDING_DOWN]) < -0.002
    assert abs(statistics.mean(moves[Regime.RANGING])) < 0.004


def test_options_are_honoured() -> None:
    generated = trades(
        seed=2,
        count=3_000,
        symbol="ETH_JPY",
        exchange="bitflyer",
        start_price=Decimal("500000"),
        mean_interval_ms=100,
        tick=Decimal("5"),
        size_step=Decimal("0.01"),
    )
    assert {t.symbol for t in generated} == {Symbol("ETH_JPY")}
    assert {t.exchange for t in generated} == {Exchange("bitflyer")}
    assert all(t.price % 5 == 0 for t in generated)
    assert all(t.size % Decimal("0.01") == 0 for t in generated)
    assert 400_000 < statistics.median(t.price for t in generated) < 600_000
    assert generated[-1].timestamp - START < timedelta(minutes=30)  # ~100 ms apart


def test_a_tiny_price_never_reaches_zero() -> None:
    generated = trades(seed=4, count=5_000, start_price=Decimal("3"), volatility=0.05)
    assert min(t.price for t in generated) >= 1


@pytest.mark.parametrize(
    "options",
    [
        {"count": -1},
        {"mean_interval_ms": 0},
        {"volatility": -0.1},
        {"tick": Decimal(0)},
        {"size_step": Decimal("-0.1")},
        {"start": datetime(2025, 7, 1)},  # naive
    ],
)
def test_refuses_bad_options(options: dict) -> None:
    arguments = {"start": START, "seed": 1, "count": 10, **options}
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        SyntheticMarket(**arguments)


# --- the signals the strategies look for, on 1-minute bars ----------------------------------


def minute_closes(generated: list[Trade]) -> list[float]:
    """Closes of 1-minute bars; an empty minute repeats the previous close (as BarBuilder)."""
    closes: list[float] = []
    current = None
    for trade in generated:
        minute, price = int(trade.timestamp.timestamp()) // 60, float(trade.price)
        if current is None:
            closes.append(price)
        elif minute == current:
            closes[-1] = price
        else:
            closes.extend([closes[-1]] * (minute - current - 1))
            closes.append(price)
        current = minute
    return closes


def sma_crosses(closes: list[float], fast: int = 5, slow: int = 20) -> int:
    signs = [
        sum(closes[i - fast + 1 : i + 1]) / fast > sum(closes[i - slow + 1 : i + 1]) / slow
        for i in range(slow - 1, len(closes))
    ]
    return sum(a != b for a, b in itertools.pairwise(signs))


def rsi_values(closes: list[float], period: int = 14) -> list[float]:
    changes = [b - a for a, b in itertools.pairwise(closes)]
    gain = sum(max(c, 0) for c in changes[:period]) / period
    loss = sum(max(-c, 0) for c in changes[:period]) / period
    values = []
    for change in changes[period:]:
        gain = (gain * (period - 1) + max(change, 0)) / period
        loss = (loss * (period - 1) + max(-change, 0)) / period
        values.append(100.0 if loss == 0 else 100 - 100 / (1 + gain / loss))
    return values


def band_touches(closes: list[float], period: int = 20, width: float = 2.0) -> tuple[int, int]:
    upper = lower = 0
    for i in range(period - 1, len(closes)):
        window = closes[i - period + 1 : i + 1]
        mean, spread = statistics.fmean(window), statistics.pstdev(window)
        upper += closes[i] >= mean + width * spread
        lower += closes[i] <= mean - width * spread
    return upper, lower


def test_minute_closes_fill_empty_minutes() -> None:
    moments = [(1, timedelta(0)), (2, timedelta(seconds=30)), (3, timedelta(minutes=3))]
    few = [
        Trade(Exchange("gmo"), Symbol("BTC"), Side.BUY, Decimal(p), Decimal(1), START + after)
        for p, after in moments
    ]
    assert minute_closes(few) == [2.0, 2.0, 2.0, 3.0]


@pytest.mark.parametrize("seed", [7, 1, 2, 3])
def test_strategies_have_something_to_see(seed: int) -> None:
    closes = minute_closes(trades(seed=seed))
    assert 150 <= len(closes) <= 220  # about three hours of 1-minute bars
    rsi = rsi_values(closes)
    upper, lower = band_touches(closes)
    assert sma_crosses(closes) >= 3
    assert min(rsi) <= 30 or max(rsi) >= 70
    assert upper + lower >= 5
    if seed == 7:  # the shipped sample: every strategy fires both ways
        assert min(rsi) <= 30
        assert max(rsi) >= 70
        assert upper >= 1
        assert lower >= 1


SAMPLE = Path(__file__).resolve().parents[2] / "src" / "samples" / "gmo_BTC_JPY_sample.csv.gz"


def test_shipped_sample_is_this_generators_seed_7(
    market: tuple[SyntheticMarket, list[Trade]],
) -> None:
    """src/samples/gmo_BTC_JPY_sample.csv.gz = seed 7, 20,000 trades from 2025-07-01 21:00 UTC."""
    _, generated = market
    assert SAMPLE.stat().st_size < 400_000
    assert list(read_gmo_trades(SAMPLE)) == generated
