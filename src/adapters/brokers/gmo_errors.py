"""GMO's error codes, each mapped to what the engine must do (gmo-api.md, "Error codes").

The mapping is a table, not scattered `if`s, so a reviewer can check it line by line against
the reference, and a test can check that every documented code is here.
"""

from __future__ import annotations

from trading_engine.ports.broker import (
    BrokerError,
    BrokerFatal,
    OrderNotCancelable,
    OrderNotFound,
    OrderRejected,
    RetryLater,
    TradingPaused,
)

REJECT = frozenset(
    {
        "ERR-70",  # wrong side for a close order
        "ERR-189",  # close size exceeds position
        "ERR-200",  # active orders + this exceed orderable quantity
        "ERR-201",  # insufficient funds
        "ERR-208",  # size exceeds available balance
        "ERR-254",  # position not found
        "ERR-430",  # bad orderId / executionId
        "ERR-635",  # too many active orders
        "ERR-682",  # margin call occurred (also alert)
        "ERR-683",  # margin call in progress (also alert)
        "ERR-5106",  # invalid parameter
        "ERR-5114",  # too many decimals
        "ERR-5121",  # price too low
        "ERR-5126",  # size outside min/max
    }
)
# Server trouble: a read retries; a placement may have gone through, so it is looked up.
SERVER_TROUBLE = frozenset({"ERR-554", "ERR-626"})
RATE_LIMITED = "ERR-5003"
CLOCK_SKEW = frozenset({"ERR-5008", "ERR-5009"})  # resync the clock, then retry
PAUSED = frozenset({"ERR-5201", "ERR-5202", "ERR-5203"})  # maintenance, pre-open
FATAL = frozenset(
    {
        "ERR-5007",  # API-TIMESTAMP missing / not numeric: our bug
        "ERR-5010",  # bad signature: our bug or a wrong secret
        "ERR-5011",  # API-KEY missing
        "ERR-5012",  # authentication invalid
        "ERR-5204",  # bad path: our bug
        "ERR-5208",  # orderId and executionId both given: our bug
    }
)
NOT_CANCELABLE = "ERR-5122"
NOT_FOUND = "ERR-5123"
ALERT = frozenset({"ERR-682", "ERR-683", *FATAL})

DOCUMENTED = REJECT | SERVER_TROUBLE | CLOCK_SKEW | PAUSED | FATAL
DOCUMENTED |= {RATE_LIMITED, NOT_CANCELABLE, NOT_FOUND}


def error_for(code: str, message: str, *, placing: bool = False) -> BrokerError:
    """The typed error for one of GMO's `messages` entries."""
    kind: type[BrokerError]
    if code in REJECT:
        kind = OrderNotFound if code == "ERR-430" and not placing else OrderRejected
    elif code in SERVER_TROUBLE or code == RATE_LIMITED or code in CLOCK_SKEW:
        kind = RetryLater
    elif code in PAUSED:
        kind = TradingPaused
    elif code in FATAL:
        kind = BrokerFatal
    elif code == NOT_CANCELABLE:
        kind = OrderNotCancelable
    elif code == NOT_FOUND:
        kind = OrderNotFound
    else:
        # An undocumented code on a placement is still a refusal (GMO answered: no order);
        # anywhere else the engine cannot know what it means, so it stops and says so.
        kind = OrderRejected if placing else BrokerFatal
    return kind(message, code=code, exchange="gmo")
