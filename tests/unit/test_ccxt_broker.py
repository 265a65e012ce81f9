"""CcxtBroker over real loopback HTTP: ccxt's own `binance` client against the Binance spot
stand-in, plus the error and status mappings the stand-in cannot produce."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import ccxt
import pytest

from support.harness_ccxt import CcxtHarness, make_broker
from trading_engine.adapters.brokers.ccxt_broker import (
    CcxtBroker,
    is_ambiguous,
    order_status,
    to_decimal,
    translate,
)
from trading_engine.domain.values import CancelType, OrderStatus, OrderType, Side, TimeInForce
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
from trading_engine_standins.ccxt import API_SECRET, StandinServer

D = Decimal


@pytest.fixture
def harness() -> Iterator[CcxtHarness]:
    harness = CcxtHarness()
    yield harness
    harness.close()


def limit(
    cid: str, side: Side, size: str, price: str, time_in_force: TimeInForce | None = None
) -> OrderRequest:
    return OrderRequest(cid, "BTC", side, OrderType.LIMIT, D(size), D(price), time_in_force)


def market(cid: str, side: Side, size: str, symbol: str = "BTC") -> OrderRequest:
    return OrderRequest(cid, symbol, side, OrderType.MARKET, D(size))


def posts(harness: CcxtHarness) -> list[dict[str, str]]:
    return [
        r.params
        for r in harness.server.requests
        if r.method == "POST" and r.path == "/api/v3/order"
    ]


# -- placing, filling, reading ---------------------------------------------------------


def test_limit_order_rests_fills_in_parts_and_keeps_our_client_id(harness: CcxtHarness) -> None:
    broker = harness.broker
    order_id = broker.place_order(limit("eng-1", Side.BUY, "0.5", "4900000"))
    assert posts(harness)[0]["newClientOrderId"] == "eng-1"

    order = broker.fetch_order(order_id)
    assert (order.status, order.executed_size, order.symbol) == (OrderStatus.NEW, D(0), "BTC")
    assert (order.size, order.price, order.client_order_id) == (D("0.5"), D(4900000), "eng-1")

    harness.market_trade("BTC", D(4800000), D("0.2"))
    order = broker.fetch_order(order_id)
    assert (order.status, order.executed_size) == (OrderStatus.PARTIALLY_FILLED, D("0.2"))

    harness.market_trade("BTC", D(4850000), D(5))
    order = broker.fetch_order(order_id)
    assert (order.status, order.executed_size) == (OrderStatus.FILLED, D("0.5"))
    executions = broker.fetch_executions(order_id)
    assert [(e.price, e.size, e.side) for e in executions] == [
        (D(4900000), D("0.2"), Side.BUY),
        (D(4900000), D("0.3"), Side.BUY),
    ]
    assert all(e.exchange_order_id == order_id for e in executions)
    assert {e.execution_id for e in broker.recent_executions("BTC")} >= {
        e.execution_id for e in executions
    }


def test_market_order_fills_at_the_last_price(harness: CcxtHarness) -> None:
    order_id = harness.broker.place_order(market("eng-m", Side.SELL, "0.1"))
    order = harness.broker.fetch_order(order_id)
    assert (order.status, order.order_type, order.price) == (
        OrderStatus.FILLED,
        OrderType.MARKET,
        None,
    )
    [execution] = harness.broker.fetch_executions(order_id)
    assert (execution.price, execution.size) == (D(5000000), D("0.1"))


def test_no_float_leaks_into_numbers(harness: CcxtHarness) -> None:
    order_id = harness.broker.place_order(market("eng-x", Side.BUY, "0.3", symbol="XRP"))
    order = harness.broker.fetch_order(order_id)
    assert order.symbol == "XRP"
    assert isinstance(order.executed_size, Decimal)
    assert order.executed_size == D("0.3")  # not 0.299999999999999988897769753748...
    assert to_decimal(0.1) == D("0.1")
    assert to_decimal(4900000.0) == D(4900000)


def test_open_orders_and_balances(harness: CcxtHarness) -> None:
    broker = harness.broker
    assert broker.open_orders("BTC") == []
    assert {b.asset: (b.amount, b.available) for b in broker.balances()} == {
        "JPY": (D(100_000_000), D(100_000_000)),
        "BTC": (D(10), D(10)),
        "XRP": (D(100_000), D(100_000)),
    }
    resting = broker.place_order(limit("eng-a", Side.BUY, "1", "4000000"))
    done = broker.place_order(market("eng-b", Side.BUY, "1"))
    assert [o.exchange_order_id for o in broker.open_orders("BTC")] == [resting]
    assert done not in {o.exchange_order_id for o in broker.open_orders("BTC")}
    assert broker.open_orders("XRP") == []
    jpy = next(b for b in broker.balances() if b.asset == "JPY")
    assert jpy.amount == D(95_000_000)  # 5,000,000 spent on the market buy
    assert jpy.available == D(91_000_000)  # 4,000,000 locked by the resting buy


def test_positions_are_empty_on_spot(harness: CcxtHarness) -> None:
    assert harness.broker.positions("BTC") == []


def test_cancel_then_cancel_again_is_not_cancelable(harness: CcxtHarness) -> None:
    broker = harness.broker
    order_id = broker.place_order(limit("eng-c", Side.SELL, "1", "6000000"))
    broker.cancel_order(order_id)
    order = broker.fetch_order(order_id)
    assert (order.status, order.cancel_type) == (OrderStatus.CANCELED, CancelType.USER)
    with pytest.raises(OrderNotCancelable):
        broker.cancel_order(order_id)


def test_cancel_of_a_filled_order_is_not_cancelable(harness: CcxtHarness) -> None:
    order_id = harness.broker.place_order(market("eng-f", Side.BUY, "0.01"))
    with pytest.raises(OrderNotCancelable):
        harness.broker.cancel_order(order_id)


def test_unknown_order_ids(harness: CcxtHarness) -> None:
    with pytest.raises(OrderNotFound):
        harness.broker.fetch_order("987654")
    with pytest.raises(OrderNotFound):
        harness.broker.cancel_order("987654")


def test_a_fresh_broker_finds_orders_it_did_not_place(harness: CcxtHarness) -> None:
    """After a restart the adapter has no id -> symbol memory: it asks its mapped symbols."""
    order_id = harness.broker.place_order(limit("eng-r", Side.BUY, "0.1", "4000000"))
    fresh = make_broker(harness.server)
    assert fresh.fetch_order(order_id).client_order_id == "eng-r"
    fresh.cancel_order(order_id)
    assert fresh.fetch_order(order_id).status is OrderStatus.CANCELED


def test_ioc_limit_without_liquidity_expires(harness: CcxtHarness) -> None:
    request = limit("eng-i", Side.BUY, "0.1", "4000000", time_in_force=TimeInForce.FAK)
    order = harness.broker.fetch_order(harness.broker.place_order(request))
    assert (order.status, order.cancel_type) == (OrderStatus.CANCELED, CancelType.EXPIRED)
    assert posts(harness)[0]["timeInForce"] == "IOC"


# -- refusals ------------------------------------------------------------------------


def test_post_only_that_would_take_is_rejected(harness: CcxtHarness) -> None:
    request = limit("eng-p", Side.BUY, "0.1", "5100000", time_in_force=TimeInForce.SOK)
    with pytest.raises(OrderRejected) as caught:
        harness.broker.place_order(request)
    assert caught.value.code == "OrderImmediatelyFillable"


def test_insufficient_funds_is_rejected(harness: CcxtHarness) -> None:
    with pytest.raises(OrderRejected) as caught:
        harness.broker.place_order(market("eng-big", Side.BUY, "1000"))
    assert caught.value.code == "InsufficientFunds"
    assert caught.value.exchange == "binance"
    assert "insufficient balance" in caught.value.message


def test_unknown_symbol_is_rejected(harness: CcxtHarness) -> None:
    with pytest.raises(OrderRejected) as caught:
        harness.broker.place_order(market("eng-doge", Side.BUY, "1", symbol="DOGE"))
    assert caught.value.code == "BadSymbol"


def test_wrong_secret_is_fatal(harness: CcxtHarness) -> None:
    broker = make_broker(harness.server, api_secret="not-" + API_SECRET)
    with pytest.raises(BrokerFatal) as caught:
        broker.balances()
    assert caught.value.code == "AuthenticationError"
    assert "-1022" in caught.value.message  # Binance: "Signature ... is not valid."


def test_wrong_api_key_is_fatal(harness: CcxtHarness) -> None:
    broker = make_broker(harness.server, api_key="someone-else")
    with pytest.raises(BrokerFatal):
        broker.place_order(market("eng-k", Side.BUY, "0.01"))
    assert harness.server.book.orders == {}


# -- placement faults ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("rejected_funds", OrderRejected, "InsufficientFunds"),
        ("maintenance", TradingPaused, "OnMaintenance"),
        ("server_error", RetryLater, "ExchangeNotAvailable"),
    ],
)
def test_placement_answered_with_an_error_creates_nothing_and_is_not_resent(
    harness: CcxtHarness, fault: str, error: type[Exception], code: str
) -> None:
    harness.inject_placement_fault(fault)
    with pytest.raises(error) as caught:
        harness.broker.place_order(limit("eng-e", Side.BUY, "0.1", "4000000"))
    assert caught.value.code == code  # type: ignore[attr-defined]
    assert harness.placements_seen() == 0
    assert harness.broker.open_orders("BTC") == []


@pytest.mark.parametrize("fault", ["timeout_after_accept", "drop_after_accept"])
def test_lost_answer_after_accept_returns_the_existing_order(
    harness: CcxtHarness, fault: str
) -> None:
    harness.inject_placement_fault(fault)
    order_id = harness.broker.place_order(limit("eng-t", Side.BUY, "0.1", "4000000"))
    assert harness.placements_seen() == 1
    order = harness.broker.fetch_order(order_id)
    assert (order.client_order_id, order.status) == ("eng-t", OrderStatus.NEW)
    assert [o.exchange_order_id for o in harness.broker.open_orders("BTC")] == [order_id]
    lookups = [r for r in harness.server.requests if r.params.get("origClientOrderId")]
    assert lookups
    assert lookups[0].params["origClientOrderId"] == "eng-t"


def test_drop_before_accept_is_placement_unknown_with_nothing_placed(
    harness: CcxtHarness,
) -> None:
    harness.inject_placement_fault("drop_before_accept")
    with pytest.raises(PlacementUnknown) as caught:
        harness.broker.place_order(limit("eng-d", Side.BUY, "0.1", "4000000"))
    assert caught.value.code == "NetworkError"
    assert harness.placements_seen() == 0
    assert harness.server.book.orders == {}
    assert harness.broker.open_orders("BTC") == []


def test_lost_answer_and_a_lookup_that_cannot_answer_is_placement_unknown(
    harness: CcxtHarness,
) -> None:
    """The order exists, but every lookup is rate-limited: the adapter must not guess and
    must not re-send."""
    harness.broker.balances()  # markets loaded before the fault
    harness.inject_placement_fault("timeout_after_accept")
    harness.server.busy_reads = 100
    with pytest.raises(PlacementUnknown) as caught:
        harness.broker.place_order(limit("eng-u", Side.BUY, "0.1", "4000000"))
    assert caught.value.code == "RequestTimeout"
    assert harness.placements_seen() == 1
    harness.server.busy_reads = 0
    [order] = harness.broker.open_orders("BTC")
    assert order.client_order_id == "eng-u"


def test_amounts_are_sent_as_plain_decimal_text(harness: CcxtHarness) -> None:
    harness.broker.place_order(
        OrderRequest("eng-s", "BTC", Side.BUY, OrderType.LIMIT, D("1E+0"), D("4.0E+6"))
    )
    assert (posts(harness)[0]["quantity"], posts(harness)[0]["price"]) == ("1", "4000000")


# -- reads retry ---------------------------------------------------------------------


def test_reads_ride_out_a_short_rate_limit(harness: CcxtHarness) -> None:
    harness.broker.balances()  # markets loaded
    harness.server.busy_reads = 2
    assert len(harness.broker.balances()) == 3


def test_reads_give_up_with_retry_later_after_backing_off() -> None:
    server = StandinServer()
    sleeps: list[float] = []
    broker = CcxtBroker(
        "binance",
        "k",
        "s",
        urls={"public": server.api_url, "private": server.api_url},
        timeout_ms=1000,
        read_attempts=3,
        backoff_seconds=0.05,
        sleep=sleeps.append,
    )
    server.close()  # nothing listens any more: connection refused
    with pytest.raises(RetryLater):
        broker.balances()
    assert sleeps == [0.05, 0.1]


# -- mappings the stand-in cannot produce ----------------------------------------------


@pytest.mark.parametrize(
    ("ccxt_error", "port_error"),
    [
        (ccxt.InsufficientFunds, OrderRejected),
        (ccxt.InvalidOrder, OrderRejected),
        (ccxt.BadSymbol, OrderRejected),
        (ccxt.BadRequest, OrderRejected),
        (ccxt.OrderImmediatelyFillable, OrderRejected),
        (ccxt.OrderNotFound, OrderNotFound),
        (ccxt.RateLimitExceeded, RetryLater),
        (ccxt.DDoSProtection, RetryLater),
        (ccxt.ExchangeNotAvailable, RetryLater),
        (ccxt.OnMaintenance, TradingPaused),
        (ccxt.AuthenticationError, BrokerFatal),
        (ccxt.PermissionDenied, BrokerFatal),
        (ccxt.AccountSuspended, BrokerFatal),
    ],
)
def test_translate_on_placement(ccxt_error: type[Exception], port_error: type[Exception]) -> None:
    translated = translate(ccxt_error("binance boom"), "binance", placing=True)
    assert type(translated) is port_error
    assert (translated.code, translated.message) == (ccxt_error.__name__, "binance boom")


@pytest.mark.parametrize(
    ("ccxt_error", "port_error"),
    [
        (ccxt.OrderNotFound, OrderNotFound),
        (ccxt.InvalidOrder, OrderNotFound),  # some exchanges' "order is not live"
        (ccxt.RequestTimeout, RetryLater),
        (ccxt.NetworkError, RetryLater),
        (ccxt.OnMaintenance, TradingPaused),
        (ccxt.BadRequest, BrokerFatal),
        (ccxt.PermissionDenied, BrokerFatal),
        (ccxt.ExchangeError, BrokerFatal),
    ],
)
def test_translate_on_reads(ccxt_error: type[Exception], port_error: type[Exception]) -> None:
    assert type(translate(ccxt_error("x"), "binance")) is port_error


@pytest.mark.parametrize(
    ("ccxt_error", "ambiguous"),
    [
        (ccxt.RequestTimeout, True),
        (ccxt.NetworkError, True),
        (ccxt.BadResponse, True),
        (ccxt.RateLimitExceeded, False),
        (ccxt.ExchangeNotAvailable, False),
        (ccxt.OnMaintenance, False),
        (ccxt.InsufficientFunds, False),
    ],
)
def test_which_placement_errors_need_a_lookup(ccxt_error: type[Exception], ambiguous: bool) -> None:
    assert is_ambiguous(ccxt_error("x")) is ambiguous


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"status": "open", "filled": 0.0}, (OrderStatus.NEW, None, False)),
        ({"status": "open", "filled": 0.1}, (OrderStatus.PARTIALLY_FILLED, None, False)),
        ({"status": "closed", "filled": 1.0}, (OrderStatus.FILLED, None, False)),
        ({"status": "canceled", "filled": 0.0}, (OrderStatus.CANCELED, CancelType.USER, False)),
        ({"status": "expired", "filled": 0.0}, (OrderStatus.CANCELED, CancelType.EXPIRED, False)),
        ({"status": "rejected", "filled": 0.0}, (OrderStatus.REJECTED, None, False)),
        ({"status": "canceling", "filled": 0.2}, (OrderStatus.PARTIALLY_FILLED, None, True)),
    ],
)
def test_status_mapping(raw: dict[str, object], expected: tuple[object, ...]) -> None:
    assert order_status(raw) == expected
