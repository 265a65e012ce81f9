"""The health endpoint wired: readiness checks and metrics from the loops, the stores and the
streams."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trading_engine.adapters.marketdata.consumer_groups import GroupState, group_states
from trading_engine.adapters.sql.database import Database
from trading_engine.app.bootstrap.databases import ProjectionWiring, database
from trading_engine.app.bootstrap.strategy import MARKET_STREAMS, STRATEGY_GROUP
from trading_engine.app.execution.loop import ExecutionLoop
from trading_engine.app.execution.metered_broker import MeteredBroker
from trading_engine.app.runtime.config import Settings
from trading_engine.app.runtime.health import Check, Readiness, dead_letter_samples, stats_samples
from trading_engine.app.runtime.resilience import LoopHealth
from trading_engine.app.strategy.loop import StrategyLoop
from trading_engine.domain.values import (
    OrderStatus,
)
from trading_engine.ports.health import MetricsSource, Sample

# The exchange clients, Redis, what only PostgreSQL uses, the health endpoint and the bar
# file reader (pandas) are imported by the functions that use them: a command loads what
# it uses, and `backtest`, `export` or `audit` no exchange client and no Redis (issue 16).
if TYPE_CHECKING:
    from trading_engine.adapters.http.health_server import HealthServer


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
        checks["consumer_groups"] = lambda: _groups_problem(group_states(client, groups))
        sources.append(lambda: _group_samples(group_states(client, groups)))
    db = database(settings.DATABASE_URL)
    if db.kind == "postgres":
        checks["postgresql"] = db.answers
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
        sources.append(lambda: _order_samples(db))

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


def _groups_problem(states: list[GroupState]) -> str | None:
    """Not ready when a group falls behind (lag), or holds too many entries unacknowledged.
    The strategy's pending entries are the trades of its open bars, held until each bar
    closes by design (an hour bar on a busy market holds many): only its lag counts."""
    for g in states:
        if g.lag is not None and g.lag > CONSUMER_LAG_READY:
            return f"{g.group} is {g.lag} entries behind on {g.stream}"
        if g.group != STRATEGY_GROUP and g.pending > CONSUMER_PENDING_READY:
            return f"{g.group} has {g.pending} entries pending on {g.stream}"
    return None


def _consumed_streams(settings: Settings, strategy: bool, execution: bool) -> list[tuple[str, str]]:
    """(stream, group) of each stream this process reads, named as the loops name them."""
    from trading_engine.adapters.signals.redis_bus import EXECUTION_GROUP, signal_stream

    prefix = settings.STREAM_PREFIX
    streams = [(prefix + s, STRATEGY_GROUP) for s in MARKET_STREAMS] if strategy else []
    if execution:
        streams.append((signal_stream(settings.EXCHANGE_NAME, prefix + "signal:"), EXECUTION_GROUP))
    return streams


def _group_samples(states: list[GroupState]) -> list[Sample]:
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


def _order_samples(db: Database) -> list[Sample]:
    """Orders by state, counted in the orders read table when scraped; every state, 0 if none."""
    counts = dict.fromkeys((status.value for status in OrderStatus), 0)
    counts.update(db.orders_by_status())
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
