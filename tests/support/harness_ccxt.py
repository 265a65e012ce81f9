"""The broker contract harness for `CcxtBroker`: ccxt's real `binance` client talking to the
loopback Binance spot stand-in (`trading_engine_standins.ccxt`)."""

from __future__ import annotations

from decimal import Decimal

from support.broker_harness import PLACEMENT_FAULTS
from trading_engine.adapters.brokers.ccxt_broker import CcxtBroker
from trading_engine_standins.ccxt import API_KEY, API_SECRET, StandinServer, trade

# Short enough that a stalled answer times out quickly; the stand-in stalls 2.5 s.
TIMEOUT_MS = 1000


def make_broker(
    server: StandinServer,
    *,
    api_key: str = API_KEY,
    api_secret: str = API_SECRET,
    timeout_ms: int = TIMEOUT_MS,
    read_attempts: int = 3,
) -> CcxtBroker:
    """A CcxtBroker pointed at the stand-in; backoff kept tiny so retries are fast."""
    return CcxtBroker(
        "binance",
        api_key,
        api_secret,
        urls={"public": server.api_url, "private": server.api_url},
        timeout_ms=timeout_ms,
        symbol_map={"BTC": "BTC/JPY", "BTC_JPY": "BTC/JPY", "XRP": "XRP/JPY"},
        read_attempts=read_attempts,
        backoff_seconds=0.01,
    )


class CcxtHarness:
    spot_symbol = "BTC"
    margin_symbol: str | None = None

    def __init__(self) -> None:
        self.server = StandinServer()
        self.broker = make_broker(self.server)

    def market_trade(self, symbol: str, price: Decimal, size: Decimal) -> None:
        trade(self.server, symbol, price, size)

    def supports_faults(self) -> bool:
        return True

    def inject_placement_fault(self, fault: str) -> None:
        if fault not in PLACEMENT_FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        self.server.inject_fault(fault)

    def placements_seen(self) -> int:
        return self.server.placements()

    def close(self) -> None:
        self.server.close()
