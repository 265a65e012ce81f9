"""The Execution module's wiring: the broker the settings name, risk limits, the execution
service and loop with their stores and watches."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from trading_engine.adapters.brokers.simulated import SimulatedExchange
from trading_engine.adapters.clocks.system import SystemClock
from trading_engine.app.bootstrap.databases import open_event_store
from trading_engine.app.bootstrap.strategy import reclaim_idle_ms
from trading_engine.app.execution.loop import ExecutionLoop
from trading_engine.app.execution.metered_broker import MeteredBroker
from trading_engine.app.execution.order_monitor import OrderMonitor
from trading_engine.app.execution.service import ExecutionService, ExecutionSettings
from trading_engine.app.execution.sole_writer import SoleWriterStore
from trading_engine.app.runtime.config import ConfigError, Settings
from trading_engine.app.strategy.loop import StrategyLoop
from trading_engine.domain.risk import RiskLimits, TradingControl, control_id_for
from trading_engine.domain.signal_age import SignalAgeLimit
from trading_engine.domain.sizing import GMO_RULES
from trading_engine.domain.values import (
    OrderType,
    Timeframe,
    paper_venue,
)
from trading_engine.ports.broker import Broker
from trading_engine.ports.change_watch import ChangeWatch
from trading_engine.ports.clock import Clock
from trading_engine.ports.event_store import EventStore
from trading_engine.ports.signal_bus import SignalSubscriber


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
        reclaim_idle_ms=reclaim_idle_ms(settings),
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
