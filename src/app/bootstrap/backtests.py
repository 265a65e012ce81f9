"""A backtest wired: the live loops with the simulated exchange, an in-memory log appended to
the run's database at the end, bar and trade drivers."""

from __future__ import annotations

import math
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from trading_engine.adapters.brokers.simulated import SimulatedExchange
from trading_engine.adapters.clocks.manual import ManualClock
from trading_engine.adapters.eventstore.application import EventSourcedStore
from trading_engine.adapters.eventstore.log_copy import append_log
from trading_engine.adapters.eventstore.memory import memory_event_store
from trading_engine.adapters.marketdata.gmo_messages import entry_fields
from trading_engine.adapters.marketdata.in_process import InProcessLog, InProcessSource
from trading_engine.adapters.marketdata.trade_files import read_gmo_trades
from trading_engine.adapters.sql.strategy_tables import PostgresStrategyTables, SqliteStrategyTables
from trading_engine.app.backtest.bars import BarBacktest
from trading_engine.app.backtest.rig import (
    ALL_IN,
    BacktestRig,
    EquitySizer,
    HeldSignals,
    Marks,
    SignalsKeptUntilEnd,
)
from trading_engine.app.backtest.trades import TradeBacktest
from trading_engine.app.bootstrap.databases import backtest_tables, database
from trading_engine.app.bootstrap.execution import execution_loop
from trading_engine.app.bootstrap.strategy import (
    MARKET_STREAMS,
    STRATEGY_GROUP,
    strategy_factory,
    strategy_parameters,
)
from trading_engine.app.execution.loop import ExecutionLoop
from trading_engine.app.execution.service import ExecutionSettings
from trading_engine.app.runtime.config import ConfigError, Settings
from trading_engine.app.strategy.loop import StrategyLoop
from trading_engine.domain.market import Trade
from trading_engine.domain.models import OHLCV
from trading_engine.domain.sizing import GMO_RULES, SymbolRules
from trading_engine.domain.values import (
    ZERO,
    Exchange,
    OrderType,
    Symbol,
    Timeframe,
)
from trading_engine.ports.event_store import EventStore


@dataclass(frozen=True)
class BacktestOptions:
    cash: Decimal = Decimal(10_000)
    commission: Decimal = ZERO
    slippage: Decimal = ZERO
    allow_short: bool = True
    fraction: Decimal | None = ALL_IN  # all-in sizing; None: fixed `size`
    size: Decimal | None = None
    size_step: Decimal | None = None  # None: the exchange's rule if known (BTC_JPY 0.001), else 1
    strategy_overrides: dict[str, Any] | None = None
    # None: orders fill in full whatever the bar's volume (backtesting.py's convention);
    # a fraction caps our fills at that share of each bar's (or trade's) volume
    volume_participation: Decimal | None = None
    # bars before it only warm the strategy up (no order, no equity): a walk-forward window
    trade_from: datetime | None = None


BACKTEST_EXCHANGE = "simulated"


@dataclass
class _BacktestWiring:
    """What bar and trade backtests share: everything but the market data and the driver."""

    store: EventStore
    tables: PostgresStrategyTables | SqliteStrategyTables
    clock: ManualClock
    exchange: SimulatedExchange
    log: InProcessLog
    held: HeldSignals
    marks: Marks
    execution: ExecutionLoop
    strategy: StrategyLoop
    parameters: dict[str, Any]
    signals: SignalsKeptUntilEnd
    log_target: EventSourcedStore | None = None  # where the run's log goes when it closes

    def rig(self, cash: Decimal) -> BacktestRig:
        """What a driver runs: the loops, the exchange, the clock, the store, the marks."""
        return BacktestRig(
            strategy=self.strategy,
            held=self.held,
            execution=self.execution,
            market=self.exchange,
            clock=self.clock,
            store=self.store,
            marks=self.marks,
            cash=cash,
            exchange=str(self.exchange.name),
            parameters=self.parameters,
        )

    def close(self) -> None:
        """Write the run's signals and append its log to its database (one transaction per
        10,000 events), then close. Also after a run that failed: what it did is in the log
        for the audit."""
        try:
            self.signals.flush()
            if self.log_target is not None:
                append_log(self.store, self.log_target)
        finally:
            self.tables.close()
            self.store.close()
            if self.log_target is not None:
                self.log_target.close()


def _backtest_wiring(
    settings: Settings,
    options: BacktestOptions,
    *,
    venue: str,
    symbols: list[str],
    first: datetime,
    timeframe: Timeframe,
    fill_rule: str,
    fill_market_at: str,
    log: InProcessLog | None = None,
) -> _BacktestWiring:
    from trading_engine.adapters.signals.in_process_bus import (
        InProcessSignalPublisher,
        InProcessSignalSubscriber,
    )

    clock = ManualClock(first)
    # The run is the only writer of its log: it runs on an in-memory store, whose cached
    # aggregates it may use as they are, and its log is appended to the database it names
    # when it closes (opened now, so that a bad URL stops the run before it starts).
    log_target = None
    target = database(settings.DATABASE_URL)
    if target.kind != "memory":
        log_target = target.event_store()
    store = memory_event_store(chained=log_target is None)  # else the target chains it
    store.hand_out_cached_state()
    tables = backtest_tables(settings.DATABASE_URL)
    steps = {
        symbol: options.size_step
        or (GMO_RULES[symbol].size_step if symbol in GMO_RULES else Decimal(1))
        for symbol in symbols
    }
    rules = {
        symbol: SymbolRules(Symbol(symbol), step, step, TICK) for symbol, step in steps.items()
    }
    exchange = SimulatedExchange(
        venue,
        fee_rate=options.commission,
        slippage=options.slippage,
        rules=rules,
        clock=clock,
        borrowing=True,
        fill_market_at=fill_market_at,
        volume_participation=options.volume_participation,
    )
    log = log or InProcessLog()  # the trades are on it before the strategy's group is made
    held = HeldSignals(InProcessSignalPublisher(log))
    marks = Marks()
    sizer = None
    if options.fraction is not None:
        sizer = EquitySizer(
            store,
            venue,
            symbols,
            options.cash,
            options.commission,
            options.slippage,
            options.fraction,
            steps,
            marks,
        )
    run_settings = settings.model_copy(
        update={
            "STARTING_EQUITY": options.cash,
            "ENABLE_SHORTING": options.allow_short,
            "ORDER_TYPE": "MARKET",
        }
    )
    execution = execution_loop(
        run_settings,
        store,
        exchange,
        InProcessSignalSubscriber(log, venue, consumer="backtest"),
        clock,
        execution=ExecutionSettings(
            exchange=venue,
            order_type=OrderType.MARKET,
            order_size=options.size or min(steps.values()),
            allow_short=options.allow_short,
            rules=rules,
            sizer=sizer,
        ),
        monotonic=lambda: clock.now().timestamp(),
        # the drivers poll whenever the exchange was shown the market with orders live: a
        # timed poll on top (every bar, since each moves the clock past the interval) would
        # only walk the recent executions again
        poll_interval=math.inf,
    )
    overrides = {"allow_short": options.allow_short, **(options.strategy_overrides or {})}
    signals = SignalsKeptUntilEnd(tables)
    strategy = StrategyLoop(
        InProcessSource(
            log,
            list(MARKET_STREAMS),
            STRATEGY_GROUP,
            "backtest",
            "md:dead-letter",
            exchanges={venue},
        ),
        tables,
        signals,
        held,
        strategy_factory(run_settings, overrides),
        [timeframe],
        timeframe,
        clock,
        batch_size=settings.STRATEGY_BATCH_SIZE,
        block_ms=0,
        tick_grace=None,
    )
    parameters = {
        "strategy": settings.STRATEGY_NAME,
        "strategy_parameters": strategy_parameters(run_settings, overrides),
        "exchange": venue,
        "symbols": symbols,
        "timeframe": str(timeframe),
        "cash": str(options.cash),
        "commission": str(options.commission),
        "slippage": str(options.slippage),
        "sizing": "fixed " + str(options.size) if options.fraction is None else "all-in",
        "size_step": {symbol: str(step) for symbol, step in steps.items()},
        "fill_rule": fill_rule,
        "volume_participation": None
        if options.volume_participation is None
        else str(options.volume_participation),
        "allow_short": options.allow_short,
        "database_url": settings.DATABASE_URL,
    }
    return _BacktestWiring(
        store,
        tables,
        clock,
        exchange,
        log,
        held,
        marks,
        execution,
        strategy,
        parameters,
        signals,
        log_target,
    )


def bar_backtest(
    settings: Settings, bars: dict[str, list[OHLCV]], options: BacktestOptions
) -> tuple[BarBacktest, Any]:
    """The live loops wired for a backtest over closed bars: the in-process bus, the
    simulated exchange (market orders at the next bar's open), a simulated clock, and the
    event store and tables `DATABASE_URL` names. The bars name the run's exchange: each run
    its own (`backtest_<id>`), so runs sharing one store keep their positions, decisions and
    signal ids apart."""
    if options.volume_participation is not None:
        silent = [symbol for symbol, series in bars.items() if not any(b.volume for b in series)]
        if silent:
            raise ConfigError(
                f"--volume-participation caps fills by the bars' volume, but {', '.join(silent)} "
                "has no volume (no volume column, or all zero): nothing would fill"
            )
    wiring = _backtest_wiring(
        settings,
        options,
        venue=str(next(iter(bars.values()))[0].exchange),
        symbols=list(bars),
        first=min(bar.timestamp for series in bars.values() for bar in series),
        timeframe=next(iter(bars.values()))[0].timeframe,
        fill_rule="next bar open",
        fill_market_at="next_trade",
    )
    backtest = BarBacktest(bars, wiring.rig(options.cash), options.trade_from)
    return backtest, wiring.close


def trade_backtest(
    settings: Settings,
    trades: list[Trade],
    options: BacktestOptions,
    *,
    venue: str,
    timeframe: Timeframe,
) -> tuple[TradeBacktest, Any]:
    """The live loops over a trades file: the strategy builds bars from the trades, the
    simulated exchange fills market orders at the next trade (after the signal)."""
    if not trades:
        raise ConfigError("the trades file holds no trades")
    trades = [replace(t, exchange=Exchange(venue)) for t in trades]
    log = InProcessLog()
    for trade in trades:
        log.append("md:trade", entry_fields(trade))
    wiring = _backtest_wiring(
        settings,
        options,
        venue=venue,
        symbols=sorted({str(t.symbol) for t in trades}),
        first=trades[0].timestamp,
        timeframe=timeframe,
        fill_rule="next trade",
        fill_market_at="next_trade",
        log=log,
    )
    backtest = TradeBacktest(trades, timeframe, wiring.rig(options.cash))
    return backtest, wiring.close


TICK = Decimal("0.00000001")


def synthetic_bar_set(
    count: int,
    seed: int,
    symbol: str = "BTC_JPY",
    exchange: str = BACKTEST_EXCHANGE,
    timeframe: str = "1m",
) -> dict[str, list[OHLCV]]:
    """Generated bars (1-minute unless asked) for a first backtest with no data at hand. The
    walk's volatility per bar grows with the bar's length as a random walk's does (1-minute
    bars: 0.1 %, hourly: 0.77 %, about 72 % a year, a crypto market's order); its trending
    regimes drift by the same 0.04 % per bar whatever the length, so a year of hourly bars
    moves like a year of a market, not like 60 years."""
    from trading_engine.adapters.marketdata.synthetic_bars import synthetic_bars  # (numpy)

    start = datetime(2026, 1, 1, tzinfo=UTC)
    scale = math.sqrt(Timeframe(timeframe).seconds / 60)
    return {
        symbol: synthetic_bars(
            symbol,
            exchange,
            start=start,
            seed=seed,
            count=count,
            timeframe=timeframe,
            volatility=0.001 * scale,
            trend=0.4 / scale,
        )
    }


def read_bar_files(
    paths: Iterable[Path],
    symbols: list[str] | None = None,
    exchange: str = BACKTEST_EXCHANGE,
    timeframe: str | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, list[OHLCV]]:
    """One bar file per symbol (symbol from the file name unless given; bar length inferred
    unless given), for a backtest. What the reader had to round is told to `warn`."""
    from trading_engine.adapters.marketdata.bar_files import read_bars

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bars = read_bars(list(paths), exchange=exchange, symbols=symbols, timeframe=timeframe)
    for warning in caught:  # e.g. how many prices had to be rounded to the store's precision
        if warn is not None:
            warn(str(warning.message))
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return bars


def read_trade_file(path: Path) -> list[Trade]:
    """A GMO trades file (the public download's CSV, gzipped or not)."""
    return list(read_gmo_trades(path))


def new_backtest_venue() -> str:
    """A run's own exchange name."""
    return f"backtest_{uuid.uuid4().hex[:8]}"


def import_what_a_backtest_imports() -> None:
    """The modules a backtest imports when it first needs them, imported now: a sweep's
    process pool forks its workers from the caller, and each would import them again."""
    import pyarrow.pandas_compat  # noqa: F401  (pandas reading a bar file)

    import trading_engine.adapters.marketdata.bar_files
    import trading_engine.adapters.marketdata.synthetic_bars
    import trading_engine.adapters.signals.in_process_bus  # noqa: F401
