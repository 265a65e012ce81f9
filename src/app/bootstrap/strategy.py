"""The Strategy module's wiring: the strategy from the settings, its loop on Redis Streams
(live) or on an in-process stream (simulate), and trade sources."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from trading_engine.adapters.clocks.system import SystemClock
from trading_engine.adapters.marketdata.gmo_messages import entry_fields
from trading_engine.adapters.marketdata.in_process import InProcessLog, InProcessSource
from trading_engine.adapters.marketdata.synthetic import synthetic_trades
from trading_engine.adapters.marketdata.trade_files import read_gmo_trades
from trading_engine.adapters.strategies.registry import UnknownStrategy, create_strategy
from trading_engine.app.bootstrap.databases import open_strategy_tables
from trading_engine.app.runtime.config import ConfigError, Settings
from trading_engine.app.strategy.loop import StrategyFactory, StrategyLoop
from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.market import Trade
from trading_engine.domain.values import (
    Timeframe,
)
from trading_engine.ports.clock import Clock

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


def reclaim_idle_ms(settings: Settings) -> int:
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
        reclaim_idle_ms=reclaim_idle_ms(settings),
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
