"""The broker contract suite's harness for the simulated exchange: no network, no faults.

The simulator is in-process, so there is nothing between the engine and the "exchange" that
could time out or drop: `supports_faults()` is False and the fault tests skip it. Trades get
strictly increasing timestamps from a fixed start, so runs are reproducible.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from trading_engine.adapters.brokers.simulated import SimulatedExchange
from trading_engine.domain.market import Trade
from trading_engine.domain.values import Exchange, Side, Symbol

START = datetime(2026, 1, 1, tzinfo=UTC)
INITIAL_PRICES = {"BTC": Decimal(5_000_000), "BTC_JPY": Decimal(5_000_000), "XRP": Decimal(100)}


class SimulatedHarness:
    spot_symbol = "BTC"
    margin_symbol: str | None = "BTC_JPY"

    def __init__(self, **options: object) -> None:
        """`options` go to `SimulatedExchange` (fee_rate, slippage, ...)."""
        self.broker = SimulatedExchange(**options)  # type: ignore[arg-type]
        for symbol, price in INITIAL_PRICES.items():
            self.broker.set_last_price(symbol, price)
        self._trades = 0

    def market_trade(self, symbol: str, price: Decimal, size: Decimal) -> None:
        self._trades += 1
        self.broker.observe_trade(
            Trade(
                exchange=Exchange("simulated"),
                symbol=Symbol(symbol),
                side=Side.BUY,
                price=price,
                size=size,
                timestamp=START + timedelta(seconds=self._trades),
            )
        )

    def supports_faults(self) -> bool:
        return False

    def inject_placement_fault(self, fault: str) -> None:
        raise NotImplementedError(f"the simulated exchange cannot inject {fault!r}")

    def placements_seen(self) -> int:
        return self.broker.placements_seen()

    def close(self) -> None:
        """Nothing to release: the simulator holds no sockets, threads or files."""
