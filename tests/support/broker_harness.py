"""What the broker contract suite needs from each adapter's test setup.

Every harness starts an account holding JPY 100,000,000, BTC 10 and XRP 100,000 (spot), with
no open orders or positions, and a last price of 5,000,000 JPY for BTC and BTC_JPY and 100
JPY for XRP. `market_trade` is how a test moves the market: a trade prints at `price` for
`size`, and resting orders that the price crosses fill against it (up to `size` in total,
oldest first). Market orders fill on placement at the last price (GMO, ccxt stand-ins) or on
the next trade (the simulated exchange); the suite always prints a trade after placing one.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from trading_engine.ports.broker import Broker

# Faults a network harness can inject into the *next* order placement.
PLACEMENT_FAULTS = (
    "rejected_funds",  # the exchange answers "insufficient funds": OrderRejected, no order
    "rate_limited",  # the exchange answers its rate-limit error once, no order created
    "maintenance",  # the exchange is in maintenance: TradingPaused, no order created
    "server_error",  # HTTP 5xx / busy, no order created
    "timeout_after_accept",  # the order is created, then the answer never comes in time
    "drop_after_accept",  # the order is created, then the connection is closed unanswered
    "drop_before_accept",  # the connection is closed before the exchange saw the order
)


class BrokerHarness(Protocol):
    broker: Broker
    spot_symbol: str  # "BTC"
    margin_symbol: str | None  # "BTC_JPY" where the exchange has margin positions

    def market_trade(self, symbol: str, price: Decimal, size: Decimal) -> None: ...

    def supports_faults(self) -> bool: ...

    def inject_placement_fault(self, fault: str) -> None:
        """Make the next placement meet `fault` (one of PLACEMENT_FAULTS)."""
        ...

    def placements_seen(self) -> int:
        """How many order placements reached the exchange (to prove nothing was sent twice)."""
        ...

    def close(self) -> None: ...
