"""Signal in on Redis, order on the stand-in GMO server, filled in parts, everything in
PostgreSQL, and the audit trail shows each step."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis

from trading_engine.adapters.brokers.gmo import GmoBroker
from trading_engine.adapters.eventstore.postgres import postgres_event_store
from trading_engine.adapters.signals.redis_bus import RedisSignalPublisher, RedisSignalSubscriber
from trading_engine.app.audit.trail import order_trail
from trading_engine.app.bootstrap.execution import execution_loop
from trading_engine.app.runtime.config import load_settings
from trading_engine.domain.models import Signal
from trading_engine.domain.order import order_id_for
from trading_engine.domain.signal_decision import decision_id_for
from trading_engine.domain.values import OrderStatus, OrderType, Side
from trading_engine.ports.broker import OrderRequest
from trading_engine_standins.gmo import GmoStandIn

pytestmark = pytest.mark.postgres


def reconciliation_runs(store) -> list:
    return [r.event for r in store.read_log(1, 1000) if r.name == "ReconciliationRun.Completed"]


@pytest.fixture
def standin(gmo_standin: Callable[..., GmoStandIn]) -> GmoStandIn:
    return gmo_standin()


def test_signal_to_filled_order_over_redis_and_postgres(
    pg_url: str, pg_schema: str, redis_url: str, redis_prefix: str, standin: GmoStandIn
) -> None:
    settings = load_settings(
        DATABASE_URL=pg_url,
        REDIS_URL=redis_url,
        STREAM_PREFIX=redis_prefix,
        ORDER_TYPE="LIMIT",
        ORDER_SIZE=Decimal("0.03"),
        ORDER_POLL_INTERVAL_SECONDS=0.01,
    )
    client = redis.Redis.from_url(redis_url)
    store = postgres_event_store(pg_url, schema=pg_schema)
    broker = GmoBroker(standin.base_url, "k", "s", timeout=2.0)
    subscriber = RedisSignalSubscriber(
        client, "gmo", consumer="exec-test", stream_prefix=f"{redis_prefix}signal:"
    )
    loop = execution_loop(settings, store, broker, subscriber)
    publisher = RedisSignalPublisher(client, stream_prefix=f"{redis_prefix}signal:")
    signal = Signal(
        signal_id="it-sig-1",
        exchange="gmo",
        symbol="BTC_JPY",
        strategy="moving_average_cross",
        action="enter_long",
        confidence=Decimal("0.9"),
        price_ref=Decimal(4_950_000),
        timestamp=datetime.now(UTC),
        indicators={"fast_ma": 4950100.5, "slow_ma": 4949000.0},
        meta={"reason": "fast crossed above slow"},
    )
    try:
        assert publisher.publish(signal)
        assert publisher.publish(signal) is False  # published twice: one entry
        client.xadd(f"{redis_prefix}signal:gmo", {"data": b"{not json"})  # malformed
        assert loop.start() == 0
        assert loop.reconciliation is not None
        assert loop.reconciliation.clean
        while loop.step(block_ms=50):
            pass
        order_id = order_id_for("it-sig-1", 0)
        order = store.get_order(order_id)
        assert (order.status, order.price, order.exchange_order_id is not None) == (
            OrderStatus.NEW,
            Decimal(4_950_000),
            True,
        )
        standin.market_trade("BTC_JPY", Decimal(4_950_000), Decimal("0.01"))
        loop.poll()
        assert store.get_order(order_id).status is OrderStatus.PARTIALLY_FILLED
        standin.market_trade("BTC_JPY", Decimal(4_940_000), Decimal("0.05"))
        loop.poll()
        loop.poll()
        order = store.get_order(order_id)
        assert (order.status, order.filled_size) == (OrderStatus.FILLED, Decimal("0.03"))
        assert len(order.execution_ids) == 2
        position = store.find_position("gmo", "BTC_JPY")
        assert position is not None
        assert position.quantity == Decimal("0.03")
        (at_gmo,) = broker.positions("BTC_JPY")
        assert at_gmo.size == Decimal("0.03")
        assert loop.stats.signals == 1
        assert loop.stats.orders == 1
        assert standin.placements() == 1
        dead = client.xrange(f"{redis_prefix}signal:gmo:dead-letter")
        assert len(dead) == 1

        decision = store.find(decision_id_for("it-sig-1"))
        assert decision.outcome == "approved"
        assert decision.indicators["fast_ma"] == 4950100.5
        trail = order_trail(store, order_id)
        assert [t.event for t in trail] == ["Submitted", "Accepted", "Filled", "Filled"]
        assert [t.status_after for t in trail] == [
            "NEW",
            "NEW",
            "PARTIALLY_FILLED",
            "FILLED",
        ]
        assert trail[0].details["signal_id"] == "it-sig-1"
        assert trail[2].details["source"] == "poll"

        # a restart: a new loop over the same store reconciles and changes nothing
        again = execution_loop(
            settings,
            store,
            broker,
            RedisSignalSubscriber(
                client, "gmo", consumer="exec-test", stream_prefix=f"{redis_prefix}signal:"
            ),
        )
        assert again.start() == 0
        assert again.reconciliation is not None
        assert again.reconciliation.clean
        assert again.reconciliation.orders_in_store == 1
        assert len(store.events_of(order_id)) == 4
        runs = reconciliation_runs(store)
        assert [run.orders_in_store for run in runs] == [0, 1]

        # an order placed at GMO behind the engine's back is reported and recorded
        broker.place_order(
            OrderRequest(
                "by-hand",
                "BTC_JPY",
                Side.BUY,
                OrderType.LIMIT,
                Decimal("0.001"),
                Decimal(4_000_000),
            )
        )
        third = execution_loop(
            settings,
            store,
            broker,
            RedisSignalSubscriber(
                client, "gmo", consumer="exec-test", stream_prefix=f"{redis_prefix}signal:"
            ),
        )
        third.start()
        assert third.reconciliation is not None
        (unknown,) = third.reconciliation.unknown_open_orders
        assert "BUY 0.001 BTC_JPY" in unknown
        last_run = [
            r.event for r in store.read_log(1, 1000) if r.name == "ReconciliationRun.Completed"
        ][-1]
        assert last_run.unknown_open_orders == [unknown]
    finally:
        broker.close()
        store.close()
        client.close()
