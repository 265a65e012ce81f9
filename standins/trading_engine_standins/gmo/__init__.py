"""A local stand-in for GMO Coin's REST API, so the GMO adapter is tested over real HTTP.

No machine here can reach GMO, so the adapter's contract tests and benchmarks run against this
server, which speaks the protocol in docs/gmo-api.md: HMAC auth, the status envelope, string
numbers, GMO's error codes and statuses, and injectable faults (errors, delays, drops).
"""

from trading_engine_standins.gmo.exchange import Exchange, ExchangeError
from trading_engine_standins.gmo.server import GmoStandIn

__all__ = ["Exchange", "ExchangeError", "GmoStandIn"]
