"""One broker contract, three adapters: GMO (against the stand-in GMO server over HTTP), ccxt
(ccxt's Binance client against a loopback Binance stand-in) and the simulated exchange.

The execution module relies on exactly these behaviours, so a new adapter is done when it
passes this file. Fault tests run where there is a network to misbehave (GMO, ccxt).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from support.broker_harness import BrokerHarness
from support.harness_ccxt import CcxtHarness
from support.harness_gmo import GmoHarness
from support.harness_simulated import SimulatedHarness
from trading_engine.adapters.brokers.gmo import GmoBroker
from trading_engine.domain.values import CancelType, OrderStatus, OrderType, Side, TimeInForce
from trading_engine.ports.broker import (
    BrokerError,
    OrderNotCancelable,
    OrderNotFound,
    OrderRejected,
    OrderRequest,
    PlacementUnknown,
    RetryLater,
    TradingPaused,
)

PRICE = Decimal(5_000_000)
UNKNOWN_ID = "987654321"


def _gmo() -> GmoHarness:
    harness = GmoHarness()
    harness.broker = GmoBroker(
        harness.base_url,
        harness.api_key,
        harness.api_secret,
        timeout=1.0,
        backoff=0.01,
        lookup_delay=0.05,
    )
    return harness


HARNESSES = {"gmo": _gmo, "ccxt": CcxtHarness, "simulated": SimulatedHarness}


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest) -> Iterator[BrokerHarness]:
    made = HARNESSES[request.param]()
    yield made
    made.close()


_counter = iter(range(1, 1_000_000))


def request_for(
    h: BrokerHarness,
    side: Side = Side.BUY,
    size: str = "0.01",
    price: Decimal | None = None,
    *,
    symbol: str | None = None,
    settle: str = "OPEN",
    tif: TimeInForce | None = None,
) -> OrderRequest:
    return OrderRequest(
        client_order_id=f"contract-{next(_counter)}",
        symbol=symbol or h.spot_symbol,
        side=side,
        order_type=OrderType.MARKET if price is None else OrderType.LIMIT,
        size=Decimal(size),
        price=price,
        time_in_force=tif,
        settle=settle,
    )


def executed(h: BrokerHarness, order_id: str) -> Decimal:
    return sum((e.size for e in h.broker.fetch_executions(order_id)), Decimal(0))


def test_limit_order_rests_then_fills_in_parts(harness: BrokerHarness) -> None:
    limit = PRICE - 100_000
    order_id = harness.broker.place_order(request_for(harness, price=limit, size="0.03"))
    order = harness.broker.fetch_order(order_id)
    assert (order.status, order.executed_size, order.size) == (OrderStatus.NEW, 0, Decimal("0.03"))
    assert order_id in {o.exchange_order_id for o in harness.broker.open_orders("BTC")}

    harness.market_trade("BTC", PRICE, Decimal("0.01"))  # above the buy limit: no fill
    assert harness.broker.fetch_order(order_id).executed_size == 0

    harness.market_trade("BTC", limit, Decimal("0.01"))
    order = harness.broker.fetch_order(order_id)
    assert (order.status, order.executed_size) == (OrderStatus.PARTIALLY_FILLED, Decimal("0.01"))

    harness.market_trade("BTC", limit - 1000, Decimal("0.05"))
    order = harness.broker.fetch_order(order_id)
    assert (order.status, order.executed_size) == (OrderStatus.FILLED, Decimal("0.03"))
    executions = harness.broker.fetch_executions(order_id)
    assert sum(e.size for e in executions) == Decimal("0.03")
    assert len({e.execution_id for e in executions}) == len(executions) >= 2
    assert all(e.side is Side.BUY and e.price <= limit for e in executions)
    assert [e.timestamp for e in executions] == sorted(e.timestamp for e in executions)
    assert order_id not in {o.exchange_order_id for o in harness.broker.open_orders("BTC")}
    recent = {e.execution_id for e in harness.broker.recent_executions("BTC")}
    assert {e.execution_id for e in executions} <= recent


def test_market_order_fills_completely(harness: BrokerHarness) -> None:
    order_id = harness.broker.place_order(request_for(harness, Side.SELL, "0.02"))
    harness.market_trade("BTC", PRICE, Decimal("1"))
    order = harness.broker.fetch_order(order_id)
    assert (order.status, order.executed_size) == (OrderStatus.FILLED, Decimal("0.02"))
    assert order.order_type is OrderType.MARKET
    assert order.side is Side.SELL
    assert executed(harness, order_id) == Decimal("0.02")


def test_cancel_a_resting_order_keeps_its_partial_fill(harness: BrokerHarness) -> None:
    limit = PRICE - 200_000
    order_id = harness.broker.place_order(request_for(harness, price=limit, size="0.05"))
    harness.market_trade("BTC", limit, Decimal("0.02"))
    harness.broker.cancel_order(order_id)
    order = harness.broker.fetch_order(order_id)
    assert order.status is OrderStatus.CANCELED
    assert order.cancel_type is CancelType.USER
    assert order.executed_size == Decimal("0.02") == executed(harness, order_id)
    with pytest.raises(OrderNotCancelable):
        harness.broker.cancel_order(order_id)


def test_cancel_of_a_filled_order_is_not_cancelable(harness: BrokerHarness) -> None:
    order_id = harness.broker.place_order(request_for(harness))
    harness.market_trade("BTC", PRICE, Decimal("1"))
    assert harness.broker.fetch_order(order_id).status is OrderStatus.FILLED
    with pytest.raises(OrderNotCancelable):
        harness.broker.cancel_order(order_id)


def test_unknown_orders_are_not_found(harness: BrokerHarness) -> None:
    with pytest.raises(OrderNotFound):
        harness.broker.fetch_order(UNKNOWN_ID)
    with pytest.raises(OrderNotFound):
        harness.broker.cancel_order(UNKNOWN_ID)


def test_several_orders_are_fetched_at_once_and_unknown_ones_left_out(
    harness: BrokerHarness,
) -> None:
    limit = PRICE - 300_000
    resting = [
        harness.broker.place_order(request_for(harness, price=limit)) for _ in range(11)
    ]  # more than GMO's 10 ids per request
    filled = harness.broker.place_order(request_for(harness))
    harness.market_trade("BTC", PRICE, Decimal("1"))
    seen = harness.broker.fetch_orders([*resting, UNKNOWN_ID, filled])
    by_id = {order.exchange_order_id: order for order in seen}
    assert set(by_id) == {*resting, filled}
    assert {by_id[i].status for i in resting} == {OrderStatus.NEW}
    assert (by_id[filled].status, by_id[filled].executed_size) == (
        OrderStatus.FILLED,
        Decimal("0.01"),
    )
    assert list(harness.broker.fetch_orders([])) == []


def test_insufficient_funds_is_rejected_with_the_exchanges_code(harness: BrokerHarness) -> None:
    too_dear = request_for(harness, price=Decimal(30_000_000), size="4.9")  # 147M JPY > 100M
    with pytest.raises(OrderRejected) as refused:
        harness.broker.place_order(too_dear)
    assert refused.value.code
    assert harness.placements_seen() == 0
    assert list(harness.broker.open_orders("BTC")) == []


def test_balances_show_the_starting_account(harness: BrokerHarness) -> None:
    balances = {b.asset: b for b in harness.broker.balances()}
    assert balances["JPY"].amount == Decimal(100_000_000)
    assert balances["BTC"].amount == Decimal(10)
    assert balances["BTC"].available <= balances["BTC"].amount


def test_find_order_finds_what_a_request_created(harness: BrokerHarness) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    request = request_for(harness, price=PRICE - 300_000)
    order_id = harness.broker.place_order(request)
    found = harness.broker.find_order(request, before)
    assert found is not None
    assert found.exchange_order_id == order_id
    assert harness.broker.find_order(request, before, exclude={order_id}) is None
    assert harness.broker.find_order(request_for(harness, price=PRICE - 1), before) is None


def test_margin_positions_open_and_close(harness: BrokerHarness) -> None:
    symbol = harness.margin_symbol
    if symbol is None:
        pytest.skip("this exchange has no margin positions (spot only)")
    opened = harness.broker.place_order(request_for(harness, size="0.01", symbol=symbol))
    harness.market_trade(symbol, PRICE, Decimal("1"))
    assert harness.broker.fetch_order(opened).status is OrderStatus.FILLED
    (position,) = harness.broker.positions(symbol)
    assert (position.side, position.size) == (Side.BUY, Decimal("0.01"))

    with pytest.raises(OrderRejected):  # more than is open
        harness.broker.place_order(
            request_for(harness, Side.SELL, "0.02", symbol=symbol, settle="CLOSE")
        )
    closed = harness.broker.place_order(
        request_for(harness, Side.SELL, "0.01", symbol=symbol, settle="CLOSE")
    )
    harness.market_trade(symbol, PRICE + 50_000, Decimal("1"))
    assert harness.broker.fetch_order(closed).status is OrderStatus.FILLED
    assert list(harness.broker.positions(symbol)) == []


# ----- faults: a network between the engine and the exchange --------------------------------


def faulty(harness: BrokerHarness, fault: str) -> None:
    if not harness.supports_faults():
        pytest.skip("in-process exchange: no network to fail")
    harness.inject_placement_fault(fault)


def test_rejection_creates_nothing(harness: BrokerHarness) -> None:
    faulty(harness, "rejected_funds")
    with pytest.raises(OrderRejected):
        harness.broker.place_order(request_for(harness))
    assert harness.placements_seen() == 0


def test_rate_limit_is_waited_out(harness: BrokerHarness) -> None:
    faulty(harness, "rate_limited")
    order_id = harness.broker.place_order(request_for(harness, price=PRICE - 1000))
    assert harness.broker.fetch_order(order_id).status is OrderStatus.NEW
    assert harness.placements_seen() == 1


def test_maintenance_pauses_trading(harness: BrokerHarness) -> None:
    faulty(harness, "maintenance")
    with pytest.raises(TradingPaused):
        harness.broker.place_order(request_for(harness))
    assert harness.placements_seen() == 0


def test_server_error_creates_nothing_and_is_not_final(harness: BrokerHarness) -> None:
    faulty(harness, "server_error")
    with pytest.raises((RetryLater, PlacementUnknown)):
        harness.broker.place_order(request_for(harness))
    assert harness.placements_seen() == 0


@pytest.mark.parametrize("fault", ["timeout_after_accept", "drop_after_accept"])
def test_a_lost_answer_finds_the_order_and_never_sends_twice(
    harness: BrokerHarness, fault: str
) -> None:
    faulty(harness, fault)
    request = request_for(harness, price=PRICE - 400_000, size="0.02")
    order_id = harness.broker.place_order(request)
    assert harness.placements_seen() == 1
    order = harness.broker.fetch_order(order_id)
    assert (order.size, order.price, order.side) == (Decimal("0.02"), PRICE - 400_000, Side.BUY)


def test_a_request_dropped_before_the_exchange_saw_it_is_unknown_not_resent(
    harness: BrokerHarness,
) -> None:
    faulty(harness, "drop_before_accept")
    with pytest.raises(BrokerError) as failed:
        harness.broker.place_order(request_for(harness, price=PRICE - 500_000))
    assert isinstance(failed.value, (PlacementUnknown, RetryLater))
    assert harness.placements_seen() == 0
    assert list(harness.broker.open_orders("BTC")) == []
