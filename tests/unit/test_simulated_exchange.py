"""The simulated exchange: fills without look-ahead, exact fees and slippage, finite liquidity,
GMO-like refusals, margin positions, and determinism."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.harness_simulated import SimulatedHarness
from trading_engine.adapters.brokers.simulated import SimulatedExchange
from trading_engine.adapters.clocks.manual import ManualClock
from trading_engine.domain.market import Trade
from trading_engine.domain.models import OHLCV
from trading_engine.domain.values import (
    CancelType,
    Exchange,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    Timeframe,
    TimeInForce,
)
from trading_engine.ports.broker import (
    OrderNotCancelable,
    OrderNotFound,
    OrderRejected,
    OrderRequest,
)

D = Decimal
T0 = datetime(2026, 1, 1, tzinfo=UTC)
BUY, SELL = Side.BUY, Side.SELL


class Market:
    """Prints trades and bars with increasing timestamps."""

    def __init__(self, broker: SimulatedExchange) -> None:
        self.broker = broker
        self.n = 0

    def trade(self, price: str | int, size: str | int = 1, symbol: str = "BTC") -> datetime:
        self.n += 1
        when = T0 + timedelta(seconds=self.n)
        self.broker.observe_trade(
            Trade(Exchange("simulated"), Symbol(symbol), BUY, D(price), D(size), when)
        )
        return when

    def bar(self, o: int, h: int, lo: int, c: int, volume: str = "10", symbol: str = "BTC") -> None:
        self.n += 1
        self.broker.observe_bar(
            OHLCV(
                Exchange("simulated"),
                Symbol(symbol),
                Timeframe("1m"),
                T0 + timedelta(minutes=self.n),
                D(o),
                D(h),
                D(lo),
                D(c),
                D(volume),
            )
        )


def exchange(**options: object) -> tuple[SimulatedExchange, Market]:
    broker = SimulatedExchange(**options)  # type: ignore[arg-type]
    for symbol, price in (("BTC", 5_000_000), ("BTC_JPY", 5_000_000), ("XRP", 100)):
        broker.set_last_price(symbol, D(price))
    return broker, Market(broker)


def order(
    side: Side = BUY,
    size: str = "0.01",
    price: int | str | None = None,
    *,
    symbol: str = "BTC",
    tif: TimeInForce | None = None,
    settle: str = "OPEN",
    cid: str = "c",
    kind: OrderType | None = None,
) -> OrderRequest:
    if kind is None:
        kind = OrderType.MARKET if price is None else OrderType.LIMIT
    return OrderRequest(
        cid, symbol, side, kind, D(size), None if price is None else D(price), tif, settle
    )


def balance(broker: SimulatedExchange, asset: str) -> tuple[Decimal, Decimal]:
    found = {b.asset: b for b in broker.balances()}[asset]
    return found.amount, found.available


# ---- market orders ----------------------------------------------------------------------------


def test_market_order_fills_at_the_next_trade_never_before() -> None:
    broker, market = exchange()
    market.trade(4_000_000)  # before placement: must not be used
    oid = broker.place_order(order(BUY, "0.01", cid="mine"))
    assert broker.fetch_order(oid).status is OrderStatus.NEW
    assert broker.fetch_executions(oid) == []
    when = market.trade(5_100_000)
    [execution] = broker.fetch_executions(oid)
    assert (execution.price, execution.size, execution.timestamp) == (D(5_100_000), D("0.01"), when)
    seen = broker.fetch_order(oid)
    assert (seen.status, seen.executed_size, seen.client_order_id) == (
        OrderStatus.FILLED,
        D("0.01"),
        "mine",
    )
    assert oid == "sim-1"
    assert execution.execution_id == "sim-x1"


def test_market_order_fills_at_the_next_bar_open() -> None:
    broker, market = exchange()
    oid = broker.place_order(order(SELL, "0.5"))
    market.bar(5_010_000, 5_200_000, 4_900_000, 5_100_000)
    [execution] = broker.fetch_executions(oid)
    assert execution.price == D(5_010_000)
    assert broker.last_price("BTC") == D(5_100_000)


def test_slippage_and_fees_are_exact() -> None:
    broker, market = exchange(
        fee_rate=D("0.001"), maker_fee_rate=D("-0.0001"), slippage=D("0.0002")
    )
    buy = broker.place_order(order(BUY, "0.1"))
    sell = broker.place_order(order(SELL, "0.1", cid="s"))
    market.trade(5_000_000, 1)
    [b], [s] = broker.fetch_executions(buy), broker.fetch_executions(sell)
    assert b.price == D(5_001_000)  # 5,000,000 * 1.0002
    assert s.price == D(4_999_000)  # 5,000,000 * 0.9998
    assert b.fee == D("500.1")  # 5,001,000 * 0.1 * 0.001
    assert s.fee == D("499.9")
    # taker buy and sell: JPY pays both fees and the spread
    assert balance(broker, "JPY")[0] == D(100_000_000) - D(500_100) - D("500.1") + D(499_900) - D(
        "499.9"
    )
    assert balance(broker, "BTC")[0] == D(10)
    limit = broker.place_order(order(BUY, "0.1", 4_990_000))
    market.trade(4_980_000, 1)
    [m] = broker.fetch_executions(limit)
    assert (m.price, m.fee) == (D(4_990_000), D("-49.9"))  # maker rebate, no slippage


def test_partial_fills_are_limited_by_volume_participation_oldest_first() -> None:
    broker, market = exchange(volume_participation=D("0.25"))
    first = broker.place_order(order(BUY, "0.3"))
    second = broker.place_order(order(BUY, "0.2", cid="2"))
    market.trade(5_000_000, "1")  # 0.25 for us: all to the oldest
    assert broker.fetch_order(first).status is OrderStatus.PARTIALLY_FILLED
    assert broker.fetch_order(first).executed_size == D("0.25")
    assert broker.fetch_order(second).executed_size == D(0)
    market.trade(5_000_100, "0.4")  # 0.1: 0.05 finishes the first, 0.05 to the second
    assert broker.fetch_order(first).status is OrderStatus.FILLED
    assert broker.fetch_order(second).executed_size == D("0.05")
    assert [e.price for e in broker.fetch_executions(first)] == [D(5_000_000), D(5_000_100)]
    assert [o.exchange_order_id for o in broker.open_orders("BTC")] == [second]


def test_fill_sizes_are_rounded_down_to_the_size_step() -> None:
    broker, market = exchange(volume_participation=D("0.1"))
    oid = broker.place_order(order(BUY, "1", symbol="XRP"))
    market.trade(100, "15", symbol="XRP")  # 1.5 allowed, XRP step 1
    assert broker.fetch_order(oid).executed_size == D(1)


# ---- limit orders -----------------------------------------------------------------------------


def test_limit_orders_fill_at_their_limit_when_a_trade_reaches_it() -> None:
    broker, market = exchange()
    buy = broker.place_order(order(BUY, "0.01", 4_900_000))
    sell = broker.place_order(order(SELL, "0.01", 5_100_000, cid="s"))
    market.trade(4_900_001)
    market.trade(5_099_999)
    assert broker.fetch_executions(buy) == []
    assert broker.fetch_executions(sell) == []
    market.trade(4_800_000)
    market.trade(5_100_000)
    assert [e.price for e in broker.fetch_executions(buy)] == [D(4_900_000)]
    assert [e.price for e in broker.fetch_executions(sell)] == [D(5_100_000)]


def test_limit_orders_with_bars_fill_at_the_limit_or_at_a_gapping_open() -> None:
    broker, market = exchange()
    touch = broker.place_order(order(BUY, "0.01", 4_900_000))
    market.bar(5_000_000, 5_050_000, 4_950_000, 5_000_000)  # low above the limit: no fill
    assert broker.fetch_executions(touch) == []
    market.bar(5_000_000, 5_050_000, 4_850_000, 4_950_000)
    assert broker.fetch_executions(touch)[0].price == D(4_900_000)
    gap_buy = broker.place_order(order(BUY, "0.01", 4_900_000))
    gap_sell = broker.place_order(order(SELL, "0.01", 4_950_000))
    market.bar(4_800_000, 4_850_000, 4_700_000, 4_800_000)  # opens below the buy limit
    assert broker.fetch_executions(gap_buy)[0].price == D(4_800_000)
    assert broker.fetch_executions(gap_sell) == []
    market.bar(5_000_000, 5_000_000, 4_990_000, 4_995_000)  # opens above the sell limit
    assert broker.fetch_executions(gap_sell)[0].price == D(5_000_000)


def test_fak_fills_what_it_can_on_the_next_trade_and_expires_the_rest() -> None:
    broker, market = exchange(volume_participation=D("0.5"))
    oid = broker.place_order(order(BUY, "1", 5_000_000, tif=TimeInForce.FAK))
    market.trade(5_000_000, "1")
    seen = broker.fetch_order(oid)
    assert (seen.status, seen.executed_size, seen.cancel_type) == (
        OrderStatus.CANCELED,
        D("0.5"),
        CancelType.EXPIRED,
    )
    missed = broker.place_order(order(BUY, "1", 4_000_000, tif=TimeInForce.FAK))
    market.trade(5_000_000, "1")
    assert broker.fetch_order(missed).status is OrderStatus.CANCELED
    assert broker.fetch_order(missed).executed_size == D(0)


def test_fok_fills_entirely_or_expires_without_a_fill() -> None:
    broker, market = exchange(volume_participation=D("0.5"))
    too_big = broker.place_order(order(BUY, "1", 5_000_000, tif=TimeInForce.FOK))
    market.trade(5_000_000, "1")
    seen = broker.fetch_order(too_big)
    assert (seen.status, seen.executed_size, seen.cancel_type) == (
        OrderStatus.CANCELED,
        D(0),
        CancelType.EXPIRED,
    )
    fits = broker.place_order(order(BUY, "0.5", 5_000_000, tif=TimeInForce.FOK))
    market.trade(5_000_000, "1")
    assert broker.fetch_order(fits).status is OrderStatus.FILLED


def test_sok_is_canceled_if_it_would_cross_the_last_price() -> None:
    broker, market = exchange()
    taker = broker.place_order(order(BUY, "0.01", 5_000_000, tif=TimeInForce.SOK))
    seen = broker.fetch_order(taker)
    assert (seen.status, seen.cancel_type) == (OrderStatus.CANCELED, CancelType.EXPIRED)
    maker = broker.place_order(order(SELL, "0.01", 5_000_001, tif=TimeInForce.SOK))
    assert broker.fetch_order(maker).status is OrderStatus.NEW
    market.trade(5_000_001)
    assert broker.fetch_order(maker).status is OrderStatus.FILLED


# ---- cancels and lookups ----------------------------------------------------------------------


def test_cancel_keeps_the_partial_fill_and_refuses_finished_or_unknown_orders() -> None:
    broker, market = exchange(volume_participation=D("0.5"))
    oid = broker.place_order(order(BUY, "1", 5_000_000))
    market.trade(5_000_000, "1")
    broker.cancel_order(oid)
    seen = broker.fetch_order(oid)
    assert (seen.status, seen.executed_size, seen.cancel_type) == (
        OrderStatus.CANCELED,
        D("0.5"),
        CancelType.USER,
    )
    assert broker.open_orders("BTC") == []
    assert balance(broker, "JPY")[1] == balance(broker, "JPY")[0]  # nothing reserved any more
    with pytest.raises(OrderNotCancelable):
        broker.cancel_order(oid)
    with pytest.raises(OrderNotFound) as missing:
        broker.cancel_order("sim-999")
    assert missing.value.code == "ERR-5123"
    with pytest.raises(OrderNotFound):
        broker.fetch_order("sim-999")
    assert broker.fetch_executions("sim-999") == []


def test_open_orders_reserve_balances() -> None:
    broker, _ = exchange(fee_rate=D("0.001"))
    broker.place_order(order(BUY, "1", 4_000_000))
    broker.place_order(order(SELL, "2", 6_000_000))
    assert balance(broker, "JPY") == (D(100_000_000), D(100_000_000) - D(4_004_000))
    assert balance(broker, "BTC") == (D(10), D(8))


def test_recent_executions_keeps_the_last_hundred() -> None:
    broker, market = exchange()
    for i in range(105):
        broker.place_order(order(BUY, "1", symbol="XRP", cid=str(i)))
        market.trade(100, "1", symbol="XRP")
    recent = broker.recent_executions("XRP")
    assert len(recent) == 100
    assert recent[0].execution_id == "sim-x6"
    assert recent[-1].execution_id == "sim-x105"
    assert broker.recent_executions("BTC") == []


def test_order_timestamps_come_from_the_clock() -> None:
    clock = ManualClock(T0 + timedelta(hours=1))
    broker, _ = exchange(clock=clock)
    oid = broker.place_order(order(BUY))
    assert broker.fetch_order(oid).timestamp == T0 + timedelta(hours=1)


def test_fill_market_at_last_price_fills_on_placement() -> None:
    broker, _ = exchange(fill_market_at="last_price", slippage=D("0.001"))
    oid = broker.place_order(order(BUY, "0.01"))
    assert broker.fetch_executions(oid)[0].price == D(5_005_000)


def test_a_buy_that_outgrows_the_funds_fills_what_it_can_and_cancels_the_rest() -> None:
    broker, market = exchange(balances={"JPY": D(1_000_000)})
    oid = broker.place_order(order(BUY, "0.19"))  # 950,000 JPY at the last price
    market.trade(6_000_000, 1)  # now 1,140,000 JPY
    seen = broker.fetch_order(oid)
    assert (seen.status, seen.executed_size, seen.cancel_type) == (
        OrderStatus.CANCELED,
        D("0.16666"),
        CancelType.INSUFFICIENT_BALANCE,
    )
    assert balance(broker, "JPY")[0] == D(1_000_000) - D("0.16666") * 6_000_000


def test_bars_limit_fills_by_volume_and_ignore_bars_seen_before_placement() -> None:
    broker, market = exchange(volume_participation=D("0.1"))
    market.bar(4_000_000, 4_100_000, 3_900_000, 4_000_000)
    oid = broker.place_order(order(BUY, "2", 4_500_000))
    assert broker.fetch_executions(oid) == []
    market.bar(4_600_000, 4_600_000, 4_400_000, 4_500_000, volume="5")
    assert broker.fetch_order(oid).executed_size == D("0.5")
    market.bar(4_600_000, 4_600_000, 4_400_000, 4_500_000, volume="100")
    assert broker.fetch_order(oid).status is OrderStatus.FILLED


def test_orders_and_trades_from_two_threads_keep_the_books_consistent() -> None:
    broker, market = exchange(volume_participation=D("0.5"))
    ids: list[str] = []

    def place() -> None:
        for i in range(200):
            ids.append(broker.place_order(order(BUY if i % 2 else SELL, "0.001", cid=str(i))))

    def feed() -> None:
        for _ in range(400):
            market.trade(5_000_000, "0.001")

    threads = [threading.Thread(target=place), threading.Thread(target=feed)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    market.trade(5_000_000, "1")
    assert all(broker.fetch_order(oid).status is OrderStatus.FILLED for oid in ids)
    assert balance(broker, "BTC")[0] == D(10)
    assert len({e.execution_id for oid in ids for e in broker.fetch_executions(oid)}) >= 200


# ---- rejections -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (order(symbol="DOGE"), "ERR-5106"),
        (order(BUY, "0.01", kind=OrderType.LIMIT), "ERR-5106"),
        (order(BUY, "0.01", 5_000_000, kind=OrderType.MARKET), "ERR-5106"),
        (order(BUY, "0.01", kind=OrderType.STOP), "ERR-5106"),
        (order(BUY, "0.01", tif=TimeInForce.SOK), "ERR-5106"),
        (order(BUY, "0.01", settle="MAYBE"), "ERR-5106"),
        (order(BUY, "0.000015"), "ERR-5114"),
        (order(BUY, "0.01", "4999999.5"), "ERR-5114"),
        (order(BUY, "0.01", 0), "ERR-5121"),
        (order(BUY, "0.000001"), "ERR-5126"),
        (order(BUY, "0"), "ERR-5126"),
        (order(BUY, "20.00001"), "ERR-201"),  # more than 100,000,000 JPY buys
        (order(BUY, "1000001", 100, symbol="XRP"), "ERR-201"),
        (order(SELL, "10.00001"), "ERR-208"),
        (order(SELL, "0.001", symbol="BTC_JPY", settle="CLOSE"), "ERR-254"),
    ],
)
def test_rejections_carry_gmo_codes_and_create_no_order(request_: OrderRequest, code: str) -> None:
    broker, _ = exchange()
    with pytest.raises(OrderRejected) as raised:
        broker.place_order(request_)
    assert raised.value.code == code
    assert raised.value.message
    assert broker.placements_seen() == 0
    assert broker.open_orders(request_.symbol) == []


def test_funds_checks_count_what_open_orders_reserve() -> None:
    broker, _ = exchange(fee_rate=D("0.001"))
    broker.place_order(order(SELL, "6", 6_000_000))
    with pytest.raises(OrderRejected) as raised:
        broker.place_order(order(SELL, "5"))
    assert raised.value.code == "ERR-208"
    broker.place_order(order(BUY, "19", 5_000_000))  # 95,095,000 JPY reserved
    with pytest.raises(OrderRejected) as raised:
        broker.place_order(order(BUY, "1"))  # ~5,005,000 more at the last price
    assert raised.value.code == "ERR-201"


# ---- margin -----------------------------------------------------------------------------------


def test_margin_open_and_fifo_close_with_realized_gain() -> None:
    broker, market = exchange(fee_rate=D("0.0005"))
    broker.place_order(order(BUY, "0.01", symbol="BTC_JPY"))
    market.trade(5_000_000, symbol="BTC_JPY")
    broker.place_order(order(BUY, "0.02", symbol="BTC_JPY"))
    market.trade(5_100_000, symbol="BTC_JPY")
    positions = broker.positions("BTC_JPY")
    assert [(p.position_id, p.side, p.size, p.price) for p in positions] == [
        ("simpos-1", BUY, D("0.01"), D(5_000_000)),
        ("simpos-2", BUY, D("0.02"), D(5_100_000)),
    ]
    assert broker.positions("BTC") == []
    assert balance(broker, "BTC")[0] == D(10)  # margin does not touch spot assets
    with pytest.raises(OrderRejected) as raised:
        broker.place_order(order(SELL, "0.031", symbol="BTC_JPY", settle="CLOSE"))
    assert raised.value.code == "ERR-189"
    with pytest.raises(OrderRejected) as raised:
        broker.place_order(order(BUY, "0.001", symbol="BTC_JPY", settle="CLOSE"))
    assert raised.value.code == "ERR-254"  # no short to close
    close = broker.place_order(order(SELL, "0.015", symbol="BTC_JPY", settle="CLOSE"))
    with pytest.raises(OrderRejected) as raised:  # 0.015 already promised to `close`
        broker.place_order(order(SELL, "0.02", symbol="BTC_JPY", settle="CLOSE"))
    assert raised.value.code == "ERR-189"
    jpy_before = balance(broker, "JPY")[0]
    market.trade(5_200_000, symbol="BTC_JPY")
    assert broker.fetch_order(close).status is OrderStatus.FILLED
    [p] = broker.positions("BTC_JPY")
    assert (p.position_id, p.size) == ("simpos-2", D("0.015"))
    realized = D("0.01") * 200_000 + D("0.005") * 100_000
    fee = D(5_200_000) * D("0.015") * D("0.0005")
    assert balance(broker, "JPY")[0] == jpy_before + realized - fee


def test_margin_short_is_closed_by_a_buy_and_partial_open_fills_extend_one_position() -> None:
    broker, market = exchange(volume_participation=D("0.5"))
    broker.place_order(order(SELL, "0.004", 5_000_000, symbol="BTC_JPY"))
    market.trade(5_000_000, "0.004", symbol="BTC_JPY")
    market.trade(5_000_000, "0.004", symbol="BTC_JPY")
    [p] = broker.positions("BTC_JPY")
    assert (p.side, p.size, p.price) == (SELL, D("0.004"), D(5_000_000))
    broker.place_order(order(BUY, "0.004", symbol="BTC_JPY", settle="CLOSE"))
    market.trade(4_900_000, "1", symbol="BTC_JPY")
    assert broker.positions("BTC_JPY") == []
    assert balance(broker, "JPY")[0] == D(100_000_000) + D(400)


# ---- determinism and properties ---------------------------------------------------------------


def run_script(trades: list[tuple[int, str]]) -> list[object]:
    broker, market = exchange(
        fee_rate=D("0.001"), slippage=D("0.0001"), volume_participation=D("0.3")
    )
    out: list[object] = []
    for i, (price, size) in enumerate(trades):
        side = BUY if i % 2 == 0 else SELL
        limit = None if i % 3 == 0 else price + (10_000 if side is SELL else -10_000)
        broker.place_order(order(side, "0.05", limit, cid=f"c{i}"))
        market.trade(price, size)
    for i in range(len(trades)):
        out.extend(broker.fetch_executions(f"sim-{i + 1}"))
        out.append(broker.fetch_order(f"sim-{i + 1}"))
    out.extend(broker.balances())
    return out


def test_two_runs_over_the_same_trades_are_identical() -> None:
    trades = [(5_000_000 + 7_000 * ((i * 37) % 11 - 5), f"0.0{i % 9 + 1}") for i in range(60)]
    first, second = run_script(trades), run_script(trades)
    assert first == second
    assert any(getattr(x, "execution_id", None) for x in first)


actions = st.lists(
    st.tuples(
        st.sampled_from(["buy", "sell", "trade", "cancel"]),
        st.integers(min_value=4_900, max_value=5_100),  # price in thousands of JPY
        st.integers(min_value=1, max_value=300),  # size in 0.001 BTC
        st.booleans(),  # market (True) or limit
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(actions, st.sampled_from([D("1"), D("0.3")]), st.sampled_from([D(0), D("0.001")]))
def test_no_overfill_and_spot_value_changes_only_by_fees(
    script: list[tuple[str, int, int, bool]], participation: Decimal, fee_rate: Decimal
) -> None:
    broker, market = exchange(
        volume_participation=participation,
        fee_rate=fee_rate,
        slippage=D("0.0005"),
        balances={"JPY": D(30_000_000), "BTC": D("2")},
    )
    placed: list[str] = []
    codes: list[str] = []
    for action, price_k, size_m, is_market in script:
        price, size = price_k * 1000, D(size_m) / 1000
        if action == "trade":
            market.trade(price, str(size))
        elif action == "cancel" and placed:
            with contextlib.suppress(OrderNotCancelable):
                broker.cancel_order(placed[price_k % len(placed)])
        elif action in ("buy", "sell"):
            side = BUY if action == "buy" else SELL
            try:
                placed.append(
                    broker.place_order(order(side, str(size), None if is_market else price))
                )
            except OrderRejected as rejected:
                codes.append(rejected.code)
    assert set(codes) <= {"ERR-201", "ERR-208"}
    quote = base = fees = D(0)
    for oid in placed:
        seen = broker.fetch_order(oid)
        executions = broker.fetch_executions(oid)
        filled = sum((e.size for e in executions), D(0))
        assert filled == seen.executed_size <= seen.size
        assert (seen.status is OrderStatus.FILLED) == (filled == seen.size)
        for e in executions:
            quote -= e.side.sign * e.price * e.size
            base += e.side.sign * e.size
            fees += e.fee
    jpy, jpy_available = balance(broker, "JPY")
    btc, btc_available = balance(broker, "BTC")
    assert jpy == D(30_000_000) + quote - fees
    assert btc == D(2) + base
    assert jpy >= 0
    assert btc >= 0
    assert jpy_available >= 0
    assert btc_available >= 0


def test_the_harness_starts_as_the_contract_suite_expects() -> None:
    harness = SimulatedHarness()
    assert harness.supports_faults() is False
    with pytest.raises(NotImplementedError):
        harness.inject_placement_fault("timeout_after_accept")
    assert harness.broker.last_price("BTC_JPY") == D(5_000_000)
    assert harness.broker.last_price("XRP") == D(100)
    oid = harness.broker.place_order(order(BUY, "0.01"))
    harness.market_trade("BTC", D(5_000_000), D(1))
    assert harness.broker.fetch_order(oid).status is OrderStatus.FILLED
    assert harness.placements_seen() == 1
    harness.close()
