"""Benchmark (not a test): the floor under a backtest that keeps issue 16's rules, next to
backtesting.py's whole process on the same CSV file, in the same run.

The rules: the loops stay the live loops (a bar is an `OHLCV` with Decimal prices, handed to
the strategy's `calculate_indicators` and `decide` one at a time, as the live loop does), and
every decision, order, fill and position change is an event of an aggregate of the
eventsourcing library, stored in the run's event log. This script times only the parts no
design under those rules can skip, each in this process with nothing else around it:

* imports: a fresh process importing what a backtest imports (the library, the domain, the
  bar-file reader, numpy/pandas), and nothing more;
* bars: reading the CSV file into `OHLCV` objects (the engine's bar-file reader);
* strategy: each bar through the strategy's `calculate_indicators` and `decide`;
* events: for each signal, the 11 domain events of the trades it makes, made by the domain's
  own commands on the library's aggregates (the decision received and approved, two orders
  submitted, accepted and filled, the position moved twice, the risk result), with no store;
* encoding: those events turned into the library's stored events (the mapper with the
  engine's orjson transcoder), as any event log has to before it writes a byte.

The sum is a lower bound of a whole-process backtest under the rules (it leaves out the
execution's sizing and risk checks, the simulated exchange, the equity curve, writing the
log and the results). If it is above backtesting.py's whole process, parity under the rules
is out of reach in CPython whatever else is done, and the script says so.

  .venv/bin/python bench/backtest_floor.py --bars 200000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from backtest_speed import random_walk, run_backtesting_py  # noqa: E402

IMPORTS = (
    "import eventsourcing.application, eventsourcing.domain, eventsourcing.persistence;"
    "import numpy, pandas;"
    "import trading_engine.domain.order, trading_engine.domain.position;"
    "import trading_engine.domain.signal_decision, trading_engine.domain.risk;"
    "import trading_engine.adapters.marketdata.bar_files;"
    "import trading_engine.adapters.strategies.moving_average_cross;"
    "import trading_engine.adapters.eventstore.transcoder"
)


def time_imports() -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", IMPORTS], check=True)
        best = min(best, time.perf_counter() - started)
    return best


def library_alone(count: int) -> tuple[float, float]:
    """`count` events of a bare aggregate of the library (nine changes after each creation,
    one Decimal field each), then mapped to stored events with the engine's transcoder."""
    from uuid import uuid4

    from eventsourcing.domain import Aggregate
    from eventsourcing.persistence import Mapper

    from trading_engine.adapters.eventstore.transcoder import OrjsonTranscoder

    class Bare(Aggregate):
        class Changed(Aggregate.Event):
            price: Decimal

    price = Decimal("1.5")
    started = time.perf_counter()
    events = []
    for _ in range(count // 10):
        bare = Bare._create(Bare.Created, id=uuid4())
        for _ in range(9):
            bare.trigger_event(Bare.Changed, price=price)
        events += bare.collect_events()
    making = time.perf_counter() - started
    mapper = Mapper(transcoder=OrjsonTranscoder())
    started = time.perf_counter()
    for event in events:
        mapper.to_stored_event(event)
    return making, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=200_000)
    parser.add_argument("--fast", type=int, default=10)
    parser.add_argument("--slow", type=int, default=20)
    args = parser.parse_args()

    from eventsourcing.persistence import Mapper

    from trading_engine.adapters.eventstore.transcoder import OrjsonTranscoder
    from trading_engine.adapters.marketdata.bar_files import read_bars
    from trading_engine.adapters.strategies.moving_average_cross import MovingAverageCross
    from trading_engine.domain.models import Execution
    from trading_engine.domain.order import Order
    from trading_engine.domain.position import Position
    from trading_engine.domain.risk import RiskLimits, TradingControl
    from trading_engine.domain.signal_decision import SignalDecision
    from trading_engine.domain.values import Side

    with tempfile.TemporaryDirectory() as folder:
        csv = Path(folder) / "BTC_JPY.csv"
        random_walk(args.bars).to_csv(csv)
        reference = run_backtesting_py(csv, args.fast, args.slow, None)

        imports = time_imports()

        started = time.perf_counter()
        series = read_bars([csv], exchange="gmo")
        bars = [bar for found in series.values() for bar in found]
        reading = time.perf_counter() - started

    strategy = MovingAverageCross(args.fast, args.slow, allow_short=True)
    started = time.perf_counter()
    signals = []
    for bar in bars:
        signal = strategy.decide(bar, strategy.calculate_indicators(bar))
        if signal is not None:
            signals.append(signal)
    deciding = time.perf_counter() - started

    limits = RiskLimits(
        max_position_size=Decimal(10**6),
        max_drawdown_pct=Decimal(100),
        drawdown_window=timedelta(days=1),
        max_consecutive_losses=10**6,
        starting_equity=Decimal(10**9),
    )
    first = bars[0]
    control = TradingControl.open(str(first.exchange), at=first.timestamp)
    position = Position.open_book(first.exchange, first.symbol, at=first.timestamp)
    events = []
    started = time.perf_counter()
    size = Decimal("0.01")
    for n, signal in enumerate(signals):
        at = signal.timestamp + timedelta(seconds=1)
        decision = SignalDecision.receive(signal, at=at)
        side = Side.BUY if signal.action.value == "enter_long" else Side.SELL
        orders = [
            Order.submit(
                signal_id=signal.signal_id,
                exchange=signal.exchange,
                symbol=signal.symbol,
                side=side,
                order_type="MARKET",
                size=size,
                at=at,
                leg=leg,
                settle="CLOSE" if leg == 0 else "OPEN",
            )
            for leg in (0, 1)
        ]
        decision.approve([o.id for o in orders], "ACTIVE", at=at)
        for leg, order in enumerate(orders):
            order.accept(f"X{n}-{leg}", at=at)
            fill = Execution(f"E{n}-{leg}", side, signal.price_ref, size, Decimal(0), at)
            order.fill(fill, at=at, source="stream")
            position.apply_fill(
                order_id=order.id,
                exchange=order.exchange,
                symbol=order.symbol,
                execution=fill,
                at=at,
            )
        control.record_result(str(signal.symbol), Decimal(0), limits, at=at)
        events += decision.collect_events()
        for order in orders:
            events += order.collect_events()
    events += position.collect_events() + control.collect_events()
    making = time.perf_counter() - started

    mapper = Mapper(transcoder=OrjsonTranscoder())
    started = time.perf_counter()
    stored = [mapper.to_stored_event(event) for event in events]
    encoding = time.perf_counter() - started
    assert len(stored) == len(events)

    bare_events, bare_encoding = library_alone(len(events))

    floor = imports + reading + deciding + making + encoding
    print(f"{args.bars:,} one-minute bars, SMA {args.fast}/{args.slow}: {len(signals):,} signals")
    print(f"backtesting.py, whole process: {reference.wall:6.2f} s ({reference.trades} trades)")
    print("the floor under the rules (this process, nothing around it):")
    rows = [
        ("imports (fresh process, best of 3)", imports),
        (f"CSV -> {len(bars):,} OHLCV", reading),
        ("strategy on every bar", deciding),
        (f"{len(events):,} domain events ({len(events) / len(signals):.1f}/signal)", making),
        ("events -> stored events", encoding),
    ]
    for label, seconds in rows:
        print(f"  {label:<44} {seconds:6.2f} s")
    print(f"  {'sum':<44} {floor:6.2f} s")
    bare = imports + deciding + bare_events + bare_encoding
    print("the part no code of ours can change (the library alone, same number of events):")
    print(f"  {'bare aggregate events (one Decimal field)':<44} {bare_events:6.2f} s")
    print(f"  {'their stored events (same transcoder)':<44} {bare_encoding:6.2f} s")
    print(
        f"  imports + strategy + these: {bare:.2f} s, leaving {reference.wall - bare:.2f} s of "
        f"backtesting.py's wall for reading {len(bars):,} bars into OHLCV, the execution's "
        f"sizing and risk, the simulated exchange, the equity curve and writing everything"
    )
    print(
        f"best speed possible under the rules: {reference.wall / floor:.2f} of backtesting.py "
        f"(its wall / the floor; >= 1 would leave room for parity)"
    )


if __name__ == "__main__":
    main()
