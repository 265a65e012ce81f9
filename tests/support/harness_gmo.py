"""The broker contract suite's harness for GMO: a real local GMO stand-in server.

The GMO adapter talks HTTP, so its contract tests run it against
`trading_engine_standins.gmo` over a real
socket. Placement faults are injected on `POST /v1/order`, the one call whose outcome the
engine must reconcile when it goes wrong. `broker` is left for the adapter's own test setup to
build from `base_url`, `api_key` and `api_secret`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from support.broker_harness import PLACEMENT_FAULTS
from trading_engine_standins.gmo import GmoStandIn

PLACEMENT_PATH = "/v1/order"


class GmoHarness:
    """Implements `BrokerHarness` except `broker`, which the adapter's setup assigns."""

    spot_symbol = "BTC"
    margin_symbol: str | None = "BTC_JPY"

    def __init__(
        self,
        api_key: str = "standin-key",
        api_secret: str = "standin-secret",
        timeout_delay_seconds: float = 3.0,
        rate_limit_per_second: int | None = None,
    ) -> None:
        """`timeout_delay_seconds` must exceed the broker's HTTP read timeout, so that
        `timeout_after_accept` really makes the client give up.

        GMO's own 20 requests/s limit is off by default so that contract tests which poll do
        not fail by chance; the `rate_limited` fault injects ERR-5003 deterministically.
        """
        self.api_key = api_key
        self.api_secret = api_secret
        self.timeout_delay_seconds = timeout_delay_seconds
        self.standin = GmoStandIn(api_key=api_key, api_secret=api_secret)
        self.standin.rate_limit_per_second = rate_limit_per_second
        self.base_url = self.standin.start()
        self.broker: Any = None

    def market_trade(self, symbol: str, price: Decimal, size: Decimal) -> None:
        self.standin.market_trade(symbol, price, size)

    def supports_faults(self) -> bool:
        return True

    def inject_placement_fault(self, fault: str) -> None:
        """Make the next `POST /v1/order` meet `fault` (one of PLACEMENT_FAULTS)."""
        standin = self.standin
        if fault == "rejected_funds":
            standin.fail_next(PLACEMENT_PATH, code="ERR-201")
        elif fault == "rate_limited":
            standin.fail_next(PLACEMENT_PATH, code="ERR-5003")
        elif fault == "maintenance":
            standin.fail_next(PLACEMENT_PATH, code="ERR-5201")
        elif fault == "server_error":
            standin.http_error_next(PLACEMENT_PATH, http_status=503)
        elif fault == "timeout_after_accept":
            standin.delay_next(PLACEMENT_PATH, self.timeout_delay_seconds, accept=True)
        elif fault == "drop_after_accept":
            standin.drop_next(PLACEMENT_PATH, accept=True)
        elif fault == "drop_before_accept":
            standin.drop_next(PLACEMENT_PATH, accept=False)
        else:
            raise ValueError(f"unknown fault {fault!r}; expected one of {PLACEMENT_FAULTS}")

    def placements_seen(self) -> int:
        """Orders the stand-in created (a dropped-before-accept request created none)."""
        return self.standin.placements()

    def close(self) -> None:
        try:
            closer = getattr(self.broker, "close", None)
            if callable(closer):
                closer()
        finally:
            self.standin.stop()
