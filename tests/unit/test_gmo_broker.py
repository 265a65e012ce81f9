"""The GMO adapter against the stand-in GMO server: signing, envelope, every documented error
code mapped, rate limiting, read retries, clock resync, and placements never sent twice."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from trading_engine.adapters.brokers import gmo_errors
from trading_engine.adapters.brokers.gmo import GmoBroker
from trading_engine.adapters.brokers.gmo_mapping import status_of
from trading_engine.adapters.brokers.rate_limiter import RateLimiter
from trading_engine.domain.values import CancelType, OrderStatus, OrderType, Side
from trading_engine.ports.broker import (
    BrokerFatal,
    OrderNotCancelable,
    OrderNotFound,
    OrderRejected,
    OrderRequest,
    PlacementUnknown,
    RetryLater,
    TradingPaused,
)
from trading_engine_standins.gmo import GmoStandIn

# A copy of the project's GMO reference (../shared/docs/gmo-api.md), kept in the repository so
# a fresh clone can check the adapter's error table against it.
REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "gmo-api.md"


@pytest.fixture
def standin(gmo_standin: Callable[..., GmoStandIn]) -> GmoStandIn:
    return gmo_standin(rate_limited=False)


def broker_for(standin: GmoStandIn, **options: object) -> GmoBroker:
    url = f"http://127.0.0.1:{standin.port}" if hasattr(standin, "port") else standin.base_url
    settings: dict[str, object] = {"timeout": 1.0, "backoff": 0.01, "lookup_delay": 0.05}
    return GmoBroker(url, "k", "s", **(settings | options))  # type: ignore[arg-type]


def limit(size: str = "0.01", price: int = 4_000_000, symbol: str = "BTC") -> OrderRequest:
    return OrderRequest("c-1", symbol, Side.BUY, OrderType.LIMIT, Decimal(size), Decimal(price))


def test_every_error_code_in_the_reference_is_mapped() -> None:
    documented = set()
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("| ERR-"):
            first = line.split("|")[1]
            numbers = re.findall(r"\d+", first)
            documented |= {f"ERR-{n}" for n in numbers}
    assert documented, "no error table found in the reference"
    assert documented <= gmo_errors.DOCUMENTED, documented - gmo_errors.DOCUMENTED


@pytest.mark.parametrize(
    ("code", "placing", "kind"),
    [
        ("ERR-201", True, OrderRejected),
        ("ERR-5126", True, OrderRejected),
        ("ERR-5003", True, RetryLater),
        ("ERR-554", False, RetryLater),
        ("ERR-5201", True, TradingPaused),
        ("ERR-5203", False, TradingPaused),
        ("ERR-5010", False, BrokerFatal),
        ("ERR-5012", True, BrokerFatal),
        ("ERR-5122", False, OrderNotCancelable),
        ("ERR-5123", False, OrderNotFound),
        ("ERR-430", False, OrderNotFound),
        ("ERR-430", True, OrderRejected),
        ("ERR-99999", True, OrderRejected),
        ("ERR-99999", False, BrokerFatal),
    ],
)
def test_error_kinds(code: str, placing: bool, kind: type) -> None:
    error = gmo_errors.error_for(code, "text", placing=placing)
    assert type(error) is kind
    assert error.code == code
    assert error.exchange == "gmo"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"status": "WAITING", "executedSize": "0"}, (OrderStatus.NEW, None, False)),
        ({"status": "ORDERED", "executedSize": "0"}, (OrderStatus.NEW, None, False)),
        (
            {"status": "MODIFYING", "executedSize": "0.1"},
            (OrderStatus.PARTIALLY_FILLED, None, False),
        ),
        ({"status": "CANCELLING", "executedSize": "0"}, (OrderStatus.NEW, None, True)),
        ({"status": "EXECUTED", "executedSize": "1"}, (OrderStatus.FILLED, None, False)),
        (
            {"status": "CANCELED", "executedSize": "0.2", "cancelType": "USER"},
            (OrderStatus.CANCELED, CancelType.USER, False),
        ),
        (
            {"status": "EXPIRED", "executedSize": "0", "cancelType": "EXPIRED_SOK"},
            (OrderStatus.CANCELED, CancelType.SOK_TAKER, False),
        ),
        (
            {"status": "EXPIRED", "executedSize": "0.3", "cancelType": "EXPIRED_FAK"},
            (OrderStatus.CANCELED, CancelType.EXPIRED, False),
        ),
    ],
)
def test_status_mapping_follows_the_reference(raw: dict, expected: tuple) -> None:
    assert status_of(raw) == expected


def test_a_wrong_secret_is_fatal(standin: GmoStandIn) -> None:
    broker = GmoBroker(standin.base_url, "k", "not-the-secret", timeout=1.0)
    with pytest.raises(BrokerFatal) as failed:
        broker.balances()
    assert failed.value.code == "ERR-5010"


def test_a_wrong_key_is_fatal(standin: GmoStandIn) -> None:
    broker = GmoBroker(standin.base_url, "someone-else", "s", timeout=1.0)
    with pytest.raises(BrokerFatal) as failed:
        broker.open_orders("BTC")
    assert failed.value.code == "ERR-5012"


def test_reads_retry_transient_trouble_then_succeed(standin: GmoStandIn) -> None:
    broker = broker_for(standin)
    standin.http_error_next("/v1/account/assets", http_status=503)
    standin.fail_next("/v1/account/assets", code="ERR-5003")
    standin.fail_next("/v1/account/assets", code="ERR-626")
    assets = {b.asset: b.amount for b in broker.balances()}
    assert assets["JPY"] == Decimal(100_000_000)


def test_reads_give_up_with_retry_later(standin: GmoStandIn) -> None:
    broker = broker_for(standin, read_attempts=3)
    standin.fail_next("/v1/activeOrders", code="ERR-554", times=3)
    with pytest.raises(RetryLater) as failed:
        broker.open_orders("BTC")
    assert failed.value.code == "ERR-554"


def test_clock_skew_is_resynced_and_retried(standin: GmoStandIn) -> None:
    broker = broker_for(standin)
    standin.fail_next("/v1/order", code="ERR-5009")
    order_id = broker.place_order(limit())
    assert broker.fetch_order(order_id).status is OrderStatus.NEW
    assert standin.placements() == 1


def test_maintenance_pauses_reads_too(standin: GmoStandIn) -> None:
    broker = broker_for(standin)
    standin.maintenance = True
    with pytest.raises(TradingPaused):
        broker.balances()
    assert broker.exchange_status() == "MAINTENANCE"
    standin.maintenance = False
    assert broker.exchange_status() == "OPEN"


def test_server_busy_on_placement_looks_the_order_up(standin: GmoStandIn) -> None:
    """ERR-626 on a placement: the reference says reconcile; nothing was created here."""
    broker = broker_for(standin)
    standin.fail_next("/v1/order", code="ERR-626")
    with pytest.raises(PlacementUnknown):
        broker.place_order(limit())
    assert standin.placements() == 0
    posts = [r for r in standin.requests if r[0] == "POST" and r[1] == "/v1/order"]
    assert len(posts) == 1


def test_two_lost_placements_of_the_same_terms_get_their_own_orders(standin: GmoStandIn) -> None:
    broker = broker_for(standin)
    ids = []
    for _ in range(2):
        standin.drop_next("/v1/order", accept=True)
        ids.append(broker.place_order(limit()))
    assert len(set(ids)) == 2
    assert standin.placements() == 2


def test_close_requests_go_through_close_bulk_order(standin: GmoStandIn) -> None:
    broker = broker_for(standin)
    opened = broker.place_order(
        OrderRequest("o", "BTC_JPY", Side.SELL, OrderType.MARKET, Decimal("0.02"))
    )
    assert broker.fetch_order(opened).status is OrderStatus.FILLED
    (short,) = broker.positions("BTC_JPY")
    assert short.side is Side.SELL
    closing = OrderRequest(
        "c", "BTC_JPY", Side.BUY, OrderType.MARKET, Decimal("0.02"), settle="CLOSE"
    )
    closed = broker.place_order(closing)
    assert broker.fetch_order(closed).settle == "CLOSE"
    assert list(broker.positions("BTC_JPY")) == []
    assert any(r[1] == "/v1/closeBulkOrder" for r in standin.requests)


def test_rate_limiter_spaces_calls_to_the_budget() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(20, monotonic=lambda: now[0], sleep=sleep)
    for _ in range(60):
        limiter.acquire()
    # 60 calls at 20 per second need two full extra windows of waiting
    assert now[0] == pytest.approx(2.0)


def test_the_adapter_stays_under_the_stand_ins_rate_limit(standin: GmoStandIn) -> None:
    standin.rate_limit_per_second = 20
    broker = broker_for(standin, read_attempts=1)
    for _ in range(45):  # 2+ seconds of GETs: the stand-in would answer ERR-5003 if exceeded
        broker.open_orders("BTC")
