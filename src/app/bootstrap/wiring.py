"""The composition root: the one place that knows every concrete adapter.

Everything else receives ports. `DATABASE_URL` picks the event store:
`memory://` (throwaway), `sqlite:///PATH` (embedded default), `postgresql://...` (production).
"""

from __future__ import annotations

import logging
import math
import sys
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import eventsourcing.persistence

from trading_engine.adapters.brokers.simulated import SimulatedExchange
from trading_engine.adapters.clocks.manual import ManualClock
from trading_engine.adapters.clocks.system import SystemClock
from trading_engine.adapters.eventstore.application import EventSourcedStore
from trading_engine.adapters.eventstore.log_copy import append_log
from trading_engine.adapters.eventstore.memory import memory_event_store
from trading_engine.adapters.eventstore.sqlite import sqlite_event_store
from trading_engine.adapters.logs.json_lines import JsonLinesFormatter, RedactingTextFormatter
from trading_engine.adapters.logs.redaction import Redactor, url_passwords
from trading_engine.adapters.marketdata.gmo_messages import entry_fields
from trading_engine.adapters.marketdata.in_process import InProcessLog, InProcessSource
from trading_engine.adapters.marketdata.synthetic import synthetic_trades
from trading_engine.adapters.marketdata.trade_files import read_gmo_trades
from trading_engine.adapters.projections.sqlite import sqlite_projection_store
from trading_engine.adapters.sql.connections import connect_postgres, connect_sqlite, split_schema
from trading_engine.adapters.sql.migrations import migrate_postgres, migrate_sqlite
from trading_engine.adapters.sql.strategy_tables import PostgresStrategyTables, SqliteStrategyTables
from trading_engine.adapters.strategies.registry import UnknownStrategy, create_strategy
from trading_engine.app.backtest.bars import (
    ALL_IN,
    BarBacktest,
    EquitySizer,
    HeldSignals,
    Marks,
    SignalsKeptUntilEnd,
)
from trading_engine.app.backtest.trades import TradeBacktest
from trading_engine.app.execution.loop import ExecutionLoop
from trading_engine.app.execution.metered_broker import MeteredBroker
from trading_engine.app.execution.order_monitor import OrderMonitor
from trading_engine.app.execution.orders import OrderService
from trading_engine.app.execution.service import ExecutionService, ExecutionSettings
from trading_engine.app.execution.sole_writer import SoleWriterStore
from trading_engine.app.projections.runner import ProjectionRunner
from trading_engine.app.projections.tables import all_projections
from trading_engine.app.runtime.config import ConfigError, Settings
from trading_engine.app.runtime.health import Check, Readiness, dead_letter_samples, stats_samples
from trading_engine.app.runtime.resilience import LoopHealth
from trading_engine.app.strategy.loop import StrategyFactory, StrategyLoop
from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.market import Trade
from trading_engine.domain.models import OHLCV
from trading_engine.domain.risk import RiskLimits, TradingControl, control_id_for
from trading_engine.domain.signal_age import SignalAgeLimit
from trading_engine.domain.sizing import GMO_RULES, SymbolRules
from trading_engine.domain.values import (
    ZERO,
    Exchange,
    OrderStatus,
    OrderType,
    Symbol,
    Timeframe,
    paper_venue,
)
from trading_engine.ports.broker import Broker, RetryLater, TradingPaused
from trading_engine.ports.change_watch import ChangeWatch
from trading_engine.ports.clock import Clock
from trading_engine.ports.event_store import EventStore
from trading_engine.ports.health import MetricsSource, Sample
from trading_engine.ports.projections import LogWatcher, ProjectionStore
from trading_engine.ports.signal_bus import SignalSubscriber

# The exchange clients, Redis, what only PostgreSQL uses, the health endpoint and the bar
# file reader (pandas) are imported by the functions that use them: a command loads what
# it uses, and `backtest`, `export` or `audit` no exchange client and no Redis (issue 16).
if TYPE_CHECKING:
    import redis

    from trading_engine.adapters.http.health_server import HealthServer
    from trading_engine.adapters.logs.db_log import DatabaseLogHandler


def open_event_store(database_url: str) -> EventSourcedStore:
    scheme = urlsplit(database_url).scheme
    if scheme == "memory":
        return memory_event_store()
    if scheme == "sqlite":
        return sqlite_event_store(sqlite_path(database_url))
    if scheme in ("postgresql", "postgres"):
        from trading_engine.adapters.eventstore.postgres import postgres_event_store

        return postgres_event_store(database_url)
    raise ConfigError(f"DATABASE_URL: unsupported scheme {scheme!r}")


def sqlite_path(database_url: str) -> Path | str:
    """`sqlite:///relative/file`, `sqlite:////absolute/file` or `sqlite:///:memory:`."""
    path = database_url.removeprefix("sqlite://")
    if not path.startswith("/") or path == "/":
        raise ConfigError(f"DATABASE_URL: expected sqlite:///PATH, got {database_url!r}")
    path = path[1:]
    return path if path == ":memory:" else Path(path)


@dataclass
class Engine:
    """What the use cases run on, wired together."""

    store: EventStore
    clock: Clock
    orders: OrderService

    def close(self) -> None:
        self.store.close()


def bootstrap(database_url: str, clock: Clock | None = None) -> Engine:
    store = open_event_store(database_url)
    used_clock = clock or SystemClock()
    return Engine(store=store, clock=used_clock, orders=OrderService(store, used_clock))


def open_strategy_tables(database_url: str) -> PostgresStrategyTables | SqliteStrategyTables:
    """The ohlcv / signals tables in the `DATABASE_URL` database, migrated to the latest."""
    scheme = urlsplit(database_url).scheme
    if scheme == "sqlite":
        sqlite_conn = connect_sqlite(sqlite_path(database_url))
        migrate_sqlite(sqlite_conn)
        return SqliteStrategyTables(sqlite_conn)
    if scheme in ("postgresql", "postgres"):
        pg_conn = connect_postgres(database_url)
        migrate_postgres(pg_conn)
        return PostgresStrategyTables(pg_conn, reconnect=lambda: connect_postgres(database_url))
    raise ConfigError(
        f"DATABASE_URL: the bar and signal tables need sqlite:// or postgresql://, not {scheme}://"
    )


@dataclass
class ProjectionWiring:
    """The projections of one database: the log they read, the tables they write."""

    log: EventStore
    store: ProjectionStore
    watcher: LogWatcher | None
    runners: list[ProjectionRunner]

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
        self.store.close()
        self.log.close()


def projections(database_url: str, batch_size: int = 1000) -> ProjectionWiring:
    """Every projection of `DATABASE_URL` (migrated first), its log and its wake-up."""
    scheme = urlsplit(database_url).scheme
    if scheme not in ("sqlite", "postgresql", "postgres"):
        raise ConfigError(
            f"DATABASE_URL: projections need sqlite:// or postgresql://, not {scheme}://"
        )
    migrate(database_url)
    log = open_event_store(database_url)
    store: ProjectionStore
    watcher: LogWatcher | None = None
    if scheme == "sqlite":
        store = sqlite_projection_store(sqlite_path(database_url))
    else:
        from trading_engine.adapters.projections.postgres import (
            PostgresLogWatcher,
            postgres_projection_store,
        )

        store = postgres_projection_store(database_url)
        watcher = PostgresLogWatcher(database_url)
    runners = [ProjectionRunner(p, log, store, batch_size=batch_size) for p in all_projections(log)]
    return ProjectionWiring(log, store, watcher, runners)


def migrate(database_url: str) -> list[str]:
    """Apply pending migrations; returns the versions applied now."""
    scheme = urlsplit(database_url).scheme
    if scheme == "sqlite":
        sqlite_conn = connect_sqlite(sqlite_path(database_url))
        try:
            return migrate_sqlite(sqlite_conn)
        finally:
            sqlite_conn.close()
    if scheme in ("postgresql", "postgres"):
        with connect_postgres(database_url) as pg_conn:
            return migrate_postgres(pg_conn)
    raise ConfigError(f"DATABASE_URL: nothing to migrate for {scheme}://")


# ----- the Strategy module ------------------------------------------------------------------

STRATEGY_GROUP = "trading-engine-strategy"
MARKET_STREAMS = ("md:trade", "md:orderbook", "md:ticker")


def strategy_parameters(settings: Settings, overrides: dict[str, Any] | None = None) -> dict:
    """The seed's variables for the chosen strategy, then any explicit overrides."""
    name = settings.STRATEGY_NAME
    shorting = settings.ENABLE_SHORTING
    by_name: dict[str, dict[str, Any]] = {
        "moving_average_cross": {
            "fast_window": settings.MA_FAST_WINDOW,
            "slow_window": settings.MA_SLOW_WINDOW,
            "allow_short": shorting,
        },
        "rsi": {
            "period": settings.RSI_PERIOD,
            "oversold": float(settings.RSI_OVERSOLD),
            "overbought": float(settings.RSI_OVERBOUGHT),
            "allow_short": shorting,
        },
        "bollinger_bands": {
            "period": settings.BB_PERIOD,
            "std_dev": settings.BB_STD_DEV,
            "allow_short": shorting,
        },
    }
    return {**by_name.get(name, {}), **(overrides or {})}


def strategy_factory(
    settings: Settings, overrides: dict[str, Any] | None = None
) -> StrategyFactory:
    parameters = strategy_parameters(settings, overrides)
    try:
        create_strategy(settings.STRATEGY_NAME, **parameters)  # fail at start, not per symbol
    except (UnknownStrategy, InvalidValue) as error:
        raise ConfigError(f"STRATEGY_NAME / strategy parameters: {error}") from None
    return lambda _exchange, _symbol: create_strategy(settings.STRATEGY_NAME, **parameters)


def _reclaim_idle_ms(settings: Settings) -> int:
    """Entries wait unacknowledged until their longest bar closes: never reclaim them from a
    live consumer before that (twice the longest timeframe, at least 30 s)."""
    longest = max(Timeframe(tf).seconds for tf in settings.OHLCV_TIMEFRAMES)
    return max(30_000, 2 * longest * 1000)


def live_strategy_loop(settings: Settings, clock: Clock | None = None) -> tuple[StrategyLoop, Any]:
    """Redis Streams in, Redis signal stream out, bars and signals in `DATABASE_URL`."""
    import redis

    from trading_engine.adapters.marketdata.redis_streams import RedisStreamsSource
    from trading_engine.adapters.signals.redis_bus import RedisSignalPublisher

    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=False)
    prefix = settings.STREAM_PREFIX
    source = RedisStreamsSource(
        client,
        [prefix + stream for stream in MARKET_STREAMS],
        group=STRATEGY_GROUP,
        consumer=settings.CONSUMER_NAME,
        dead_letter_stream=prefix + "md:dead-letter",
        reclaim_idle_ms=_reclaim_idle_ms(settings),
    )
    tables = open_strategy_tables(settings.DATABASE_URL)
    loop = StrategyLoop(
        source,
        tables,
        tables,
        RedisSignalPublisher(client, stream_prefix=prefix + "signal:"),
        strategy_factory(settings),
        [Timeframe(tf) for tf in settings.OHLCV_TIMEFRAMES],
        Timeframe(settings.STRATEGY_TIMEFRAME),
        clock or SystemClock(),
        batch_size=settings.STRATEGY_BATCH_SIZE,
        tick_grace=timedelta(seconds=settings.BAR_CLOSE_GRACE_SECONDS),
        symbols=settings.SYMBOLS,
        future_tolerance=timedelta(seconds=settings.CLOCK_SKEW_TOLERANCE_SECONDS),
    )

    def close() -> None:
        tables.close()
        client.close()

    return loop, close


def simulated_strategy_loop(
    settings: Settings,
    trades: Iterable[Trade],
    overrides: dict[str, Any] | None = None,
) -> tuple[StrategyLoop, InProcessLog, Any]:
    """The same loop over the in-process log (no servers): trades go in as `md:trade` entries
    in GMO's format, so they are validated exactly as live entries are."""
    from trading_engine.adapters.signals.in_process_bus import InProcessSignalPublisher

    log = InProcessLog()
    for trade in trades:
        log.append("md:trade", entry_fields(trade))
    source = InProcessSource(
        log, list(MARKET_STREAMS), STRATEGY_GROUP, settings.CONSUMER_NAME, "md:dead-letter"
    )
    tables = open_strategy_tables(settings.DATABASE_URL)
    loop = StrategyLoop(
        source,
        tables,
        tables,
        InProcessSignalPublisher(log),
        strategy_factory(settings, overrides),
        [Timeframe(tf) for tf in settings.OHLCV_TIMEFRAMES],
        Timeframe(settings.STRATEGY_TIMEFRAME),
        SystemClock(),
        batch_size=settings.STRATEGY_BATCH_SIZE,
        block_ms=0,
        tick_grace=None,  # replayed time is the trades' own: bars close on later trades
        keep_signals=True,
    )
    return loop, log, tables.close


SYNTHETIC_SPACING = timedelta(milliseconds=500)  # synthetic_trades' mean time between trades


def synthetic_start(count: int, speed: float) -> datetime:
    """When a replayed synthetic market starts. In real time (speed 1) it starts now, a live
    feed's stand-in; at any other speed it ends about now, so that no trade is published
    stamped ahead of the host's clock (the engine refuses those, see
    CLOCK_SKEW_TOLERANCE_SECONDS): at 60× an hour of trades would otherwise reach an hour into
    the future within a minute."""
    now = datetime.now(UTC).replace(microsecond=0)
    return now if speed == 1 else now - count * SYNTHETIC_SPACING


def trades_from(file: Path | None, synthetic: int | None, seed: int, start: datetime | None):
    """Trades from a GMO trades file, or a seeded synthetic market."""
    if file is not None:
        return read_gmo_trades(file)
    return synthetic_trades(
        start=start or datetime.now(UTC).replace(microsecond=0), seed=seed, count=synthetic or 0
    )


def publish_to_redis(settings: Settings, trades: Iterable[Trade], speed: float, progress) -> int:
    import redis

    from trading_engine.adapters.marketdata.stream_writer import publish_trades

    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=False)
    try:
        return publish_trades(
            client,
            trades,
            stream=settings.STREAM_PREFIX + "md:trade",
            speed=speed,
            progress=progress,
        )
    finally:
        client.close()


def open_broker(settings: Settings) -> Broker:
    """GMO's native adapter for `gmo`, ccxt for any other exchange id; with PAPER_TRADING,
    the simulated exchange, filling against the market this process's strategy loop reads."""
    if settings.PAPER_TRADING:
        return SimulatedExchange(paper_venue(settings.EXCHANGE_NAME), borrowing=True)
    key, secret = settings.API_KEY.get_secret_value(), settings.API_SECRET.get_secret_value()
    if not key or not secret:
        raise ConfigError("execution needs API_KEY and API_SECRET for " + settings.EXCHANGE_NAME)
    if settings.EXCHANGE_NAME == "gmo":
        from trading_engine.adapters.brokers.gmo import GmoBroker

        return GmoBroker(settings.REST_BASE_URL, key, secret, timeout=settings.REST_TIMEOUT_SECONDS)
    from trading_engine.adapters.brokers.ccxt_broker import CcxtBroker

    try:
        return CcxtBroker(
            settings.EXCHANGE_NAME,
            key,
            secret,
            timeout_ms=int(settings.REST_TIMEOUT_SECONDS * 1000),
        )
    except AttributeError:
        raise ConfigError(
            f"EXCHANGE_NAME {settings.EXCHANGE_NAME!r} is neither gmo nor a ccxt exchange id"
        ) from None


def connect_paper_market(strategy: StrategyLoop | None, execution: ExecutionLoop) -> None:
    """With the simulated exchange, every trade the strategy loop reads is also shown to the
    exchange, which fills orders against it: paper trading on the live market data."""
    broker = execution.broker
    if not isinstance(broker, SimulatedExchange):
        return
    if strategy is None:
        raise ConfigError(
            "PAPER_TRADING fills orders against the market data this process's strategy loop "
            "reads: set ENABLE_STRATEGY=true too"
        )
    strategy.market_observers.append(broker.observe_trade)


def risk_limits(settings: Settings) -> RiskLimits:
    return RiskLimits(
        max_position_size=settings.MAX_POSITION_SIZE,
        max_drawdown_pct=settings.MAX_DRAWDOWN_PCT,
        drawdown_window=timedelta(days=settings.DRAWDOWN_WINDOW_DAYS),
        max_consecutive_losses=settings.MAX_CONSECUTIVE_LOSSES,
        starting_equity=settings.STARTING_EQUITY,
    )


def execution_settings(settings: Settings) -> ExecutionSettings:
    return ExecutionSettings(
        exchange=venue(settings),
        order_type=OrderType(settings.ORDER_TYPE),
        order_size=settings.ORDER_SIZE,
        allow_short=settings.ENABLE_SHORTING,
        rules=GMO_RULES,
        signal_age=signal_age_limit(settings),
    )


def venue(settings: Settings) -> str:
    """Where orders and positions are recorded: the exchange, or with PAPER_TRADING its own
    `paper_<exchange>`, so simulated fills never mix with real ones (exports leave them out)."""
    return paper_venue(settings.EXCHANGE_NAME) if settings.PAPER_TRADING else settings.EXCHANGE_NAME


def signal_age_limit(settings: Settings) -> SignalAgeLimit | None:
    """MAX_SIGNAL_AGE_SECONDS: unset, 3 lengths of the signal's bar; 0, no limit."""
    if settings.MAX_SIGNAL_AGE_SECONDS == 0:
        return None
    return SignalAgeLimit(
        seconds=settings.MAX_SIGNAL_AGE_SECONDS,
        default_bar_seconds=Timeframe(settings.STRATEGY_TIMEFRAME).seconds,
    )


def execution_loop(
    settings: Settings,
    store: EventStore,
    broker: Broker,
    subscriber: SignalSubscriber,
    clock: Clock | None = None,
    *,
    execution: ExecutionSettings | None = None,
    monotonic: Callable[[], float] | None = None,
    poll_interval: float | None = None,
) -> ExecutionLoop:
    """The execution loop over any subscriber, broker and store (live, paper or simulated).
    `poll_interval` overrides ORDER_POLL_INTERVAL_SECONDS (`math.inf`: only explicit polls,
    for a backtest whose driver polls right after showing the exchange the market)."""
    clock = clock or SystemClock()
    chosen = execution or execution_settings(settings)
    # The loop is the only writer of its account's orders and positions: they are kept in
    # memory (a backtest's store, the only writer of everything in it, does so itself), and
    # its trading control, which an operator may change from another process, is watched.
    if not getattr(store, "sole_writer", False):
        store = SoleWriterStore(store)
    monitor = OrderMonitor(
        store,
        broker,
        clock,
        on_result=lambda symbol, pnl: service.record_result(symbol, pnl),
        not_found_limit=settings.LOST_ORDER_AFTER,
    )
    service = ExecutionService(
        store,
        broker,
        clock,
        risk_limits(settings),
        chosen,
        pending_exposure=monitor.pending_exposure,
        control_watch=_control_watch(store, chosen.exchange),
    )
    return ExecutionLoop(
        service,
        monitor,
        subscriber,
        store,
        broker,
        exchange=chosen.exchange,
        symbols=list(execution.rules) if execution else list(settings.SYMBOLS),
        poll_interval=settings.ORDER_POLL_INTERVAL_SECONDS
        if poll_interval is None
        else poll_interval,
        clock=clock,
        **({"monotonic": monotonic} if monotonic else {}),
    )


def _control_watch(store: EventStore, exchange: str) -> ChangeWatch | None:
    """The watch on `exchange`'s trading control in `store` (None: read on every signal). A
    sole writer's store (a backtest's) has no other writer to watch for, and its reads are
    cache hits; the in-memory watch scanned the control's events on every signal."""
    if not hasattr(store, "recorder") or getattr(store, "sole_writer", False):
        return None
    from trading_engine.adapters.eventstore.change_watch import change_watch

    return change_watch(store, control_id_for(exchange), TradingControl)


def live_execution_loop(settings: Settings) -> tuple[ExecutionLoop, Any]:
    """`signal:{exchange}` from Redis, orders on the exchange, events in `DATABASE_URL`."""
    import redis

    from trading_engine.adapters.signals.redis_bus import RedisSignalSubscriber

    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=False)
    subscriber = RedisSignalSubscriber(
        client,
        settings.EXCHANGE_NAME,
        consumer=settings.CONSUMER_NAME,
        stream_prefix=settings.STREAM_PREFIX + "signal:",
        reclaim_idle_ms=_reclaim_idle_ms(settings),
    )
    store = open_event_store(settings.DATABASE_URL)
    broker = open_broker(settings)
    if not isinstance(broker, SimulatedExchange):
        # Timed and its errors counted for /metrics. The paper exchange stays bare: it answers
        # in-process (nothing to time), and connect_paper_market feeds it the market by its type.
        # Orders go out while another thread polls: GMO's adapter takes concurrent calls,
        # a ccxt exchange (a nonce per request) gets one call at a time.
        broker = MeteredBroker(broker, serialize=broker.name != "gmo")
    loop = execution_loop(settings, store, broker, subscriber)

    def close() -> None:
        closer = getattr(broker, "close", None)
        if callable(closer):
            closer()
        loop.close()
        store.close()
        client.close()

    return loop, close


def trading_control(settings: Settings) -> tuple[ExecutionService, Any]:
    """The trading state of `EXCHANGE_NAME` in `DATABASE_URL`, for the kill switch commands.
    No broker is needed to halt or resume."""
    store = open_event_store(settings.DATABASE_URL)
    service = ExecutionService(
        store, _NoBroker(), SystemClock(), risk_limits(settings), execution_settings(settings)
    )
    return service, store.close


class _NoBroker:
    """Stands where no exchange is needed (halting, resuming): any use is a bug."""

    name = "none"

    def __getattr__(self, attribute: str) -> Any:
        raise RuntimeError(f"no exchange is configured for this command ({attribute})")


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
    if urlsplit(settings.DATABASE_URL).scheme != "memory":
        log_target = open_event_store(settings.DATABASE_URL)
    store = memory_event_store(chained=log_target is None)  # else the target chains it
    store.hand_out_cached_state()
    tables = _backtest_tables(settings.DATABASE_URL)
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
    backtest = BarBacktest(
        bars,
        strategy=wiring.strategy,
        held=wiring.held,
        execution=wiring.execution,
        market=wiring.exchange,
        clock=wiring.clock,
        store=wiring.store,
        marks=wiring.marks,
        cash=options.cash,
        exchange=str(wiring.exchange.name),
        parameters=wiring.parameters,
    )
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
    backtest = TradeBacktest(
        trades,
        timeframe=timeframe,
        strategy=wiring.strategy,
        held=wiring.held,
        execution=wiring.execution,
        market=wiring.exchange,
        clock=wiring.clock,
        store=wiring.store,
        marks=wiring.marks,
        cash=options.cash,
        exchange=venue,
        parameters=wiring.parameters,
    )
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


def _backtest_tables(database_url: str) -> PostgresStrategyTables | SqliteStrategyTables:
    if urlsplit(database_url).scheme == "memory":  # nothing kept: tables in memory too
        conn = connect_sqlite(":memory:")
        migrate_sqlite(conn)
        return SqliteStrategyTables(conn)
    return open_strategy_tables(database_url)


def health_server(
    settings: Settings,
    strategy: StrategyLoop | None,
    execution: ExecutionLoop | None,
    wiring: ProjectionWiring | None,
    loops: LoopHealth | None = None,
) -> HealthServer | None:
    """The probe and scrape endpoint of `run` (HEALTH_PORT), or None when not asked for."""
    if settings.HEALTH_PORT is None:
        return None
    import redis

    from trading_engine.adapters.brokers.gmo import GmoBroker
    from trading_engine.adapters.http.health_server import HealthServer

    checks: dict[str, Check] = {}
    if loops is not None:  # a loop waiting out a server that is away is not ready
        checks["loops"] = loops.problem
    sources: list[MetricsSource] = []
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    groups = _consumed_streams(settings, strategy is not None, execution is not None)
    if strategy is not None or execution is not None:
        checks["redis"] = lambda: None if client.ping() else "no PONG"
        checks["consumer_groups"] = lambda: _groups_problem(_group_states(client, groups))
        sources.append(lambda: _group_samples(_group_states(client, groups)))
    if urlsplit(settings.DATABASE_URL).scheme in ("postgresql", "postgres"):
        checks["postgresql"] = lambda: _postgres_answers(settings.DATABASE_URL)
    broker = execution.broker if execution is not None else None
    exchange = getattr(broker, "inner", broker)  # the exchange behind the metering
    if isinstance(exchange, GmoBroker):
        gmo = exchange
        checks["exchange"] = lambda: (
            None if (status := gmo.exchange_status()) == "OPEN" else f"GMO is {status}"
        )
    if isinstance(broker, MeteredBroker):
        sources.append(broker.samples)
    if wiring is not None:
        runners = wiring.runners
        checks["projections"] = lambda: next(
            (
                f"{s.name} is {s.lag} events behind"
                for s in (r.status() for r in runners)
                if s.lag > PROJECTION_LAG_READY
            ),
            None,
        )
        sources.append(lambda: _order_samples(settings.DATABASE_URL))

    def metrics() -> list[Sample]:
        samples: list[Sample] = []
        if strategy is not None:
            samples += stats_samples("strategy", strategy.stats, "Strategy loop counters.")
            samples += dead_letter_samples("market", strategy.dead_letters)
        if execution is not None:
            samples += stats_samples("execution", execution.stats, "Execution loop counters.")
            samples += dead_letter_samples("signals", execution.dead_letters)
            samples += [
                Sample(
                    "trading_engine_rejections_total",
                    "counter",
                    "Signals refused by a risk or sizing rule, and orders the exchange "
                    "rejected (reason: the rule, or the exchange's error code).",
                    n,
                    (("reason", reason),),
                )
                for reason, n in sorted(dict(execution.stats.rejections).items())
            ]
        if wiring is not None:
            for runner in wiring.runners:
                state = runner.status()
                samples.append(
                    Sample(
                        "trading_engine_projection_lag_events",
                        "gauge",
                        "Events in the log a projection has not applied yet.",
                        state.lag,
                        (("projection", state.name),),
                    )
                )
        return samples

    server = HealthServer(
        Readiness(checks),
        [metrics, *sources],
        host=settings.HEALTH_HOST,
        port=settings.HEALTH_PORT,
    )
    return server.start()


PROJECTION_LAG_READY = 10_000  # events: further behind, the read tables are not to be trusted
# Entries delivered and not acknowledged. The strategy holds each trade's entry until its
# longest bar closes (by design), so a busy market keeps thousands pending; far more means a
# consumer is stuck or dead and nobody claims its entries.
CONSUMER_PENDING_READY = 10_000  # entries read and not acknowledged (execution)
CONSUMER_LAG_READY = 10_000  # entries not read yet (any group): the loop is falling behind


def _groups_problem(states: list[_GroupState]) -> str | None:
    """Not ready when a group falls behind (lag), or holds too many entries unacknowledged.
    The strategy's pending entries are the trades of its open bars, held until each bar
    closes by design (an hour bar on a busy market holds many): only its lag counts."""
    for g in states:
        if g.lag is not None and g.lag > CONSUMER_LAG_READY:
            return f"{g.group} is {g.lag} entries behind on {g.stream}"
        if g.group != STRATEGY_GROUP and g.pending > CONSUMER_PENDING_READY:
            return f"{g.group} has {g.pending} entries pending on {g.stream}"
    return None


@dataclass(frozen=True)
class _GroupState:
    stream: str
    group: str
    pending: int
    lag: int | None  # None when Redis cannot tell (entries deleted from the stream)


def _consumed_streams(settings: Settings, strategy: bool, execution: bool) -> list[tuple[str, str]]:
    """(stream, group) of each stream this process reads, named as the loops name them."""
    from trading_engine.adapters.signals.redis_bus import EXECUTION_GROUP, signal_stream

    prefix = settings.STREAM_PREFIX
    streams = [(prefix + s, STRATEGY_GROUP) for s in MARKET_STREAMS] if strategy else []
    if execution:
        streams.append((signal_stream(settings.EXCHANGE_NAME, prefix + "signal:"), EXECUTION_GROUP))
    return streams


def _group_states(client: redis.Redis, groups: list[tuple[str, str]]) -> list[_GroupState]:
    """XINFO GROUPS of each stream. A stream or group not created yet (nothing published, the
    loop not started) has nothing pending: it is left out, not a failure."""
    import redis

    states = []
    for stream, group in groups:
        try:
            infos = client.xinfo_groups(stream)
        except redis.ResponseError:  # no such key
            continue
        for info in infos:
            name = info["name"]
            if (name.decode() if isinstance(name, bytes) else name) == group:
                lag = info.get("lag")
                pending = int(info["pending"])
                states.append(
                    _GroupState(stream, group, pending, None if lag is None else int(lag))
                )
    return states


def _group_samples(states: list[_GroupState]) -> list[Sample]:
    samples = []
    for state in states:
        labels = (("stream", state.stream), ("group", state.group))
        samples.append(
            Sample(
                "trading_engine_stream_pending",
                "gauge",
                "Entries delivered to the consumer group and not acknowledged yet.",
                state.pending,
                labels,
            )
        )
        if state.lag is not None:
            samples.append(
                Sample(
                    "trading_engine_stream_lag",
                    "gauge",
                    "Entries in the stream not delivered to the consumer group yet.",
                    state.lag,
                    labels,
                )
            )
    return samples


def _order_samples(database_url: str) -> list[Sample]:
    """Orders by state, counted in the orders read table when scraped; every state, 0 if none."""
    counts = dict.fromkeys((status.value for status in OrderStatus), 0)
    counts.update(_orders_by_status(database_url))
    return [
        Sample(
            "trading_engine_orders",
            "gauge",
            "Orders in the orders read table (projection), by state.",
            n,
            (("state", state),),
        )
        for state, n in counts.items()
    ]


def _orders_by_status(database_url: str) -> dict[str, int]:
    if urlsplit(database_url).scheme == "sqlite":
        conn = connect_sqlite(sqlite_path(database_url))
        try:
            rows = conn.execute("SELECT status, COUNT(*) FROM orders GROUP BY status").fetchall()
        finally:
            conn.close()
        return {str(status): int(n) for status, n in rows}
    import psycopg

    url, schema = split_schema(database_url)
    query = psycopg.sql.SQL("SELECT status, COUNT(*) FROM {}.orders GROUP BY status").format(
        psycopg.sql.Identifier(schema)
    )
    # a scrape must not wait on a rebuild's table swap: give up after 2 s
    with psycopg.connect(url, connect_timeout=2, options="-c statement_timeout=2000") as conn:
        return {str(status): int(n) for status, n in conn.execute(query).fetchall()}


def _postgres_answers(database_url: str) -> str | None:
    import psycopg

    url, _ = split_schema(database_url)
    with psycopg.connect(url, connect_timeout=2) as conn:
        conn.execute("SELECT 1")
    return None


# ----- logging and faults of the servers ---------------------------------------------------


def transient_errors() -> tuple[type[BaseException], ...]:
    """What `run` waits out with backoff instead of stopping: the servers it needs are away
    for a while (restarted, failed over, network). Anything else is a bug or needs an
    operator. (A function, so that only `run` imports redis and psycopg for it.)"""
    import psycopg
    import redis

    return (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        redis.exceptions.BusyLoadingError,
        psycopg.OperationalError,
        eventsourcing.persistence.OperationalError,
        eventsourcing.persistence.InterfaceError,
        ConnectionError,
        # the exchange in maintenance, rate limiting or unreachable while start-up reconciles
        # (once running, the loop handles these itself: it records refusals, polls again)
        TradingPaused,
        RetryLater,
    )


def __getattr__(name: str) -> Any:
    """`TRANSIENT_ERRORS`, the tuple of transient_errors(), made when first asked for."""
    if name == "TRANSIENT_ERRORS":
        return transient_errors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class LogSetup:
    redact: Redactor
    database: DatabaseLogHandler | None

    def close(self) -> None:
        if self.database is not None:
            logging.getLogger().removeHandler(self.database)
            self.database.close()


def secrets_of(settings: Settings) -> Redactor:
    return Redactor(
        [
            settings.API_KEY.get_secret_value(),
            settings.API_SECRET.get_secret_value(),
            *url_passwords(settings.DATABASE_URL, settings.REDIS_URL),
        ]
    )


def configure_logging(settings: Settings, *, to_database: bool = True) -> LogSetup:
    """stdout (JSON lines or text, at LOG_LEVEL) and, for SQL databases, the engine_log table
    (events and errors whatever the level); every line redacted of the secrets."""
    redact = secrets_of(settings)
    stdout = logging.StreamHandler(sys.stdout)
    stdout.setLevel(settings.LOG_LEVEL)
    json_lines = settings.LOG_FORMAT == "json"
    stdout.setFormatter(
        JsonLinesFormatter(redact) if json_lines else RedactingTextFormatter(redact)
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(stdout)
    root.setLevel(settings.LOG_LEVEL)
    for chatty in ("httpx", "httpcore"):  # one line per request: the metrics count those
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    database = None
    scheme = urlsplit(settings.DATABASE_URL).scheme
    if to_database and settings.LOG_TO_DATABASE:
        from trading_engine.adapters.logs.db_log import postgres_log_handler, sqlite_log_handler

        if scheme in ("postgresql", "postgres"):
            database = postgres_log_handler(settings.DATABASE_URL, redact)
        elif scheme == "sqlite":
            database = sqlite_log_handler(str(sqlite_path(settings.DATABASE_URL)), redact)
    if database is not None:
        root.addHandler(database)
    return LogSetup(redact, database)


def import_what_a_backtest_imports() -> None:
    """The modules a backtest imports when it first needs them, imported now: a sweep's
    process pool forks its workers from the caller, and each would import them again."""
    import pyarrow.pandas_compat  # noqa: F401  (pandas reading a bar file)

    import trading_engine.adapters.marketdata.bar_files
    import trading_engine.adapters.marketdata.synthetic_bars
    import trading_engine.adapters.signals.in_process_bus  # noqa: F401
