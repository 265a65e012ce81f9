"""GMO Coin's private REST API as a `Broker` (protocol: gmo-api.md).

* Every private call is signed: HMAC-SHA256(secret, timestamp + METHOD + /v1 path + body),
  over the exact body bytes sent.
* Any non-zero envelope `status` is an error, mapped by `gmo_errors` to what the engine does.
* Calls wait for the per-second budget (GET and POST counted apart) instead of earning ERR-5003.
* Reads retry transient trouble (timeouts, 5xx, ERR-5003/554/626, clock skew) with exponential
  backoff, then raise `RetryLater`.
* A placement is sent once. When its answer is lost (timeout, dropped connection, 5xx,
  ERR-554/626), the order may exist: the adapter looks for it among the account's active
  orders and latest executions (GMO has no client order id, so by symbol, side, type, size,
  price and time) and returns it, or raises `PlacementUnknown`. It never re-sends.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson

from trading_engine.adapters.brokers import gmo_errors
from trading_engine.adapters.brokers.gmo_mapping import (
    to_balance,
    to_execution,
    to_order,
    to_position,
)
from trading_engine.adapters.brokers.rate_limiter import RateLimiter
from trading_engine.ports.broker import (
    Balance,
    BrokerError,
    ExchangeExecution,
    ExchangeOrder,
    ExchangePosition,
    OrderNotFound,
    OrderRequest,
    PlacementUnknown,
    RetryLater,
)

log = logging.getLogger(__name__)

PAGE_SIZE = 100
RATE_WINDOW = 1.1
NOT_SENT = "CONNECT"  # the connection failed: the request cannot have reached GMO
# How far the exchange's order timestamp may precede our send time and still be ours
# (clock difference between us and GMO).
PLACEMENT_CLOCK_SLACK = timedelta(seconds=5)


class _AnswerLost(Exception):
    """The request may have reached GMO, but no usable answer came back."""

    def __init__(self, reason: str, code: str) -> None:
        super().__init__(reason)
        self.reason, self.code = reason, code


class GmoBroker:
    name = "gmo"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        api_secret: str,
        *,
        timeout: float = 10.0,
        requests_per_second: int = 20,
        read_attempts: int = 4,
        backoff: float = 0.25,
        lookup_attempts: int = 3,
        lookup_delay: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not api_key or not api_secret:
            raise ValueError("the GMO adapter needs API_KEY and API_SECRET")
        self._private = f"{base_url.rstrip('/')}/private"
        self._public = f"{base_url.rstrip('/')}/public"
        self._key, self._secret = api_key, api_secret.encode()
        self._http = httpx.Client(timeout=httpx.Timeout(timeout), transport=transport)
        # A window a little longer than GMO's second: requests reach GMO with jitter, and two
        # sent 1.00 s apart may arrive 0.99 s apart.
        self._limits = {
            "GET": RateLimiter(requests_per_second, RATE_WINDOW, sleep=sleep),
            "POST": RateLimiter(requests_per_second, RATE_WINDOW, sleep=sleep),
        }
        self._read_attempts, self._backoff = read_attempts, backoff
        self._lookup_attempts, self._lookup_delay = lookup_attempts, lookup_delay
        self._sleep = sleep
        self._clock_offset_ms = 0  # server minus local, learned from ERR-5008/5009 answers
        # ids this adapter handed out or was told are taken: never "found" for another request
        self._returned_ids: set[str] = set()

    def close(self) -> None:
        self._http.close()

    # ----- the Broker port ------------------------------------------------------------------

    def place_order(self, request: OrderRequest) -> str:
        path, body = _placement(request)
        sent_at = datetime.now(UTC)
        for attempt in range(self._read_attempts):
            try:
                order_id = str(self._call("POST", path, body=body, placing=True))
                self._returned_ids.add(order_id)
                return order_id
            except RetryLater as error:
                # An error envelope for rate limit or clock skew means GMO refused the call
                # before looking at the order: it is safe to send again after a pause.
                if error.code not in (NOT_SENT, gmo_errors.RATE_LIMITED, *gmo_errors.CLOCK_SKEW):
                    return self._resolve_lost_placement(request, sent_at, error.message)
                if attempt == self._read_attempts - 1:
                    raise
                self._pause(attempt)
            except _AnswerLost as lost:
                return self._resolve_lost_placement(request, sent_at, lost.reason)
        raise AssertionError("unreachable")  # pragma: no cover

    def find_order(
        self, request: OrderRequest, placed_after: datetime, exclude: Collection[str] = ()
    ) -> ExchangeOrder | None:
        """The order `request` created, if GMO has it. GMO keeps no client order id, so this
        matches symbol, side, type, size, price and settle type among the account's active
        orders and latest executions placed after `placed_after` (less a clock slack), skipping
        `exclude` (ids already accounted for). Several matches are ambiguous: `None`, and the
        caller keeps looking rather than pick one."""
        earliest = placed_after - PLACEMENT_CLOCK_SLACK
        # What the caller says is accounted for, and what this returns (the caller takes it as
        # its order), is remembered: this adapter's own lookup of a lost placement (which may
        # never have been made) must not claim an order that belongs to another request.
        if exclude is not self._returned_ids:
            self._returned_ids.update(exclude)
        candidate_ids = {o.exchange_order_id for o in self.open_orders(request.symbol)}
        candidate_ids |= {e.exchange_order_id for e in self.recent_executions(request.symbol)}
        candidate_ids -= set(exclude)
        matches = [
            order
            for order in self._orders(sorted(candidate_ids))
            if order.timestamp >= earliest and _same_order(order, request)
        ]
        if len(matches) == 1:
            self._returned_ids.add(matches[0].exchange_order_id)
            return matches[0]
        if len(matches) > 1:
            log.warning(
                "GMO: %d orders match lost placement %s; not choosing one",
                len(matches),
                request.client_order_id,
            )
        return None

    def cancel_order(self, exchange_order_id: str) -> None:
        self._call("POST", "/v1/cancelOrder", body={"orderId": _order_number(exchange_order_id)})

    def fetch_order(self, exchange_order_id: str) -> ExchangeOrder:
        orders = self._orders([exchange_order_id])
        if not orders:
            raise OrderNotFound(f"GMO does not know order {exchange_order_id}", exchange="gmo")
        return orders[0]

    def fetch_orders(self, exchange_order_ids: Sequence[str]) -> Sequence[ExchangeOrder]:
        return self._orders(exchange_order_ids)

    def fetch_executions(self, exchange_order_id: str) -> Sequence[ExchangeExecution]:
        data = self._read("/v1/executions", {"orderId": _order_number(exchange_order_id)})
        rows = [to_execution(row) for row in _rows(data)]
        return sorted(rows, key=lambda e: (e.timestamp, e.execution_id))

    def open_orders(self, symbol: str) -> Sequence[ExchangeOrder]:
        return [to_order(row) for row in self._pages("/v1/activeOrders", symbol)]

    def recent_executions(self, symbol: str) -> Sequence[ExchangeExecution]:
        data = self._read("/v1/latestExecutions", {"symbol": symbol, "count": PAGE_SIZE})
        return [to_execution(row) for row in _rows(data)]

    def balances(self) -> Sequence[Balance]:
        return [to_balance(row) for row in self._read("/v1/account/assets") or []]

    def positions(self, symbol: str) -> Sequence[ExchangePosition]:
        return [to_position(row) for row in self._pages("/v1/openPositions", symbol)]

    def exchange_status(self) -> str:
        """OPEN, PREOPEN or MAINTENANCE (public; no key needed)."""
        data = self._with_retries(lambda: self._call("GET", "/v1/status", private=False))
        return str(data["status"])

    # ----- reads ----------------------------------------------------------------------------

    def _orders(self, ids: Sequence[str]) -> list[ExchangeOrder]:
        found: list[ExchangeOrder] = []
        for start in range(0, len(ids), 10):  # GMO takes up to 10 ids per call
            chunk = ",".join(str(_order_number(i)) for i in ids[start : start + 10])
            try:
                data = self._read("/v1/orders", {"orderId": chunk})
            except OrderNotFound:
                continue
            found += [to_order(row) for row in _rows(data)]
        return found

    def _pages(self, path: str, symbol: str) -> Iterable[dict[str, Any]]:
        page = 1
        while True:
            data = self._read(path, {"symbol": symbol, "page": page, "count": PAGE_SIZE})
            rows = _rows(data)
            yield from rows
            if len(rows) < PAGE_SIZE:
                return
            page += 1

    def _read(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._with_retries(lambda: self._call("GET", path, params=params))

    def _with_retries(self, call: Callable[[], Any]) -> Any:
        for attempt in range(self._read_attempts):
            try:
                return call()
            except (RetryLater, _AnswerLost) as error:
                if attempt == self._read_attempts - 1:
                    if isinstance(error, _AnswerLost):
                        raise RetryLater(error.reason, code=error.code, exchange="gmo") from None
                    raise
                self._pause(attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _pause(self, attempt: int) -> None:
        self._sleep(min(self._backoff * 2**attempt, 5.0))

    # ----- lost placements ------------------------------------------------------------------

    def _resolve_lost_placement(self, request: OrderRequest, sent_at: datetime, why: str) -> str:
        for attempt in range(self._lookup_attempts):
            if attempt:
                self._sleep(self._lookup_delay)
            try:
                # Ids handed out or known to be taken belong to other requests.
                found = self.find_order(request, sent_at, exclude=self._returned_ids)
            except BrokerError as error:
                log.warning("GMO: lookup of lost placement failed: %s", error)
                continue
            if found is not None:
                log.warning(
                    "GMO: placement answer lost (%s); found it as order %s",
                    why,
                    found.exchange_order_id,
                )
                return found.exchange_order_id
        raise PlacementUnknown(
            f"placement of {request.client_order_id} got no answer ({why}) and no matching "
            f"order was found after {self._lookup_attempts} lookups; not re-sent",
            code="PLACEMENT_UNKNOWN",
            exchange="gmo",
        )

    # ----- one signed call ------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        private: bool = True,
        placing: bool = False,
    ) -> Any:
        text = orjson.dumps(body) if body is not None else b""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if private:
            self._limits[method].acquire()
            stamp = str(int(time.time() * 1000) + self._clock_offset_ms)
            signed = stamp.encode() + method.encode() + path.encode() + text
            headers |= {
                "API-KEY": self._key,
                "API-TIMESTAMP": stamp,
                "API-SIGN": hmac.new(self._secret, signed, hashlib.sha256).hexdigest(),
            }
        url = (self._private if private else self._public) + path
        try:
            response = self._http.request(method, url, params=params, content=text, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            # The connection was never made, so the request never reached GMO.
            raise RetryLater(
                f"cannot connect to GMO: {error!r}", code=NOT_SENT, exchange="gmo"
            ) from None
        except httpx.TimeoutException as error:
            raise _AnswerLost(f"no answer within the timeout ({error!r})", "TIMEOUT") from None
        except httpx.TransportError as error:
            raise _AnswerLost(f"connection lost: {error!r}", "NETWORK") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise _AnswerLost(f"HTTP {response.status_code}", f"HTTP-{response.status_code}")
        try:
            envelope = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise _AnswerLost(
                f"HTTP {response.status_code} with a body that is not JSON", "BAD-ENVELOPE"
            ) from None
        if not isinstance(envelope, dict) or "status" not in envelope:
            raise _AnswerLost(f"unexpected answer {str(envelope)[:200]}", "BAD-ENVELOPE")
        if envelope["status"] == 0:
            return envelope.get("data")
        messages = envelope.get("messages") or [{}]
        code = str(messages[0].get("message_code", f"STATUS-{envelope['status']}"))
        message = str(messages[0].get("message_string", ""))
        if code in gmo_errors.CLOCK_SKEW:
            self._learn_offset(envelope.get("responsetime"))
            log.warning("GMO: clock skew (%s); resynchronised, the caller retries", code)
        if code in gmo_errors.ALERT:
            log.error("GMO %s on %s %s: %s", code, method, path, message)
        raise gmo_errors.error_for(code, message, placing=placing)

    def _learn_offset(self, responsetime: object) -> None:
        try:
            server = datetime.fromisoformat(str(responsetime).replace("Z", "+00:00"))
        except ValueError:
            return
        self._clock_offset_ms = int((server.timestamp() - time.time()) * 1000)


def _placement(request: OrderRequest) -> tuple[str, dict[str, Any]]:
    """The endpoint and body for a request: a CLOSE on a leverage symbol settles open
    positions (closeBulkOrder); anything else is a new order (which, on `_JPY`, opens)."""
    body: dict[str, Any] = {
        "symbol": request.symbol,
        "side": request.side.value,
        "executionType": request.order_type.value,
        "size": _plain(request.size),
    }
    if request.price is not None:
        body["price"] = _plain(request.price)
    if request.time_in_force is not None:
        body["timeInForce"] = request.time_in_force.value
    return ("/v1/closeBulkOrder" if request.settle == "CLOSE" else "/v1/order"), body


def _same_order(order: ExchangeOrder, request: OrderRequest) -> bool:
    return (
        order.symbol == request.symbol
        and order.side is request.side
        and order.order_type is request.order_type
        and order.size == request.size
        and (request.price is None or order.price == request.price)
        and (not order.settle or order.settle == request.settle)
    )


def _rows(data: Any) -> list[dict[str, Any]]:
    """GMO answers an empty list as `{}` with no `list` key."""
    if isinstance(data, dict):
        return list(data.get("list") or [])
    return list(data or [])


def _order_number(exchange_order_id: str) -> int:
    try:
        return int(exchange_order_id)
    except ValueError:
        raise OrderNotFound(
            f"{exchange_order_id!r} is not a GMO order id", code="ERR-430", exchange="gmo"
        ) from None


def _plain(number: Decimal) -> str:
    """Decimal as GMO wants it: positional notation, no exponent."""
    return format(number.normalize(), "f")
