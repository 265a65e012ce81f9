"""The stand-in's HTTP layer: GMO's URLs, HMAC auth, envelope, rate limit and injected faults.

A real local HTTP server (not a mock transport) so that a GMO client is tested with its real
httpx stack: connection pooling, timeouts, dropped sockets and HTTP errors all happen for real.
The account itself lives in `exchange.Exchange`; this module only translates HTTP to calls on it.

Faults are registered per path ("/v1/order", "/v1/status": the path after /private or /public)
and consumed by the next matching requests, so a test states exactly which call misbehaves.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from trading_engine_standins.gmo.exchange import (
    Exchange,
    ExchangeError,
    iso,
    now_utc,
)

try:
    import orjson

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)

    def _loads(raw: bytes) -> Any:
        return orjson.loads(raw)

except ImportError:  # pragma: no cover - orjson is a project dependency
    import json

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    def _loads(raw: bytes) -> Any:
        return json.loads(raw)


TIMESTAMP_WINDOW_MS = 60_000
_PHRASES = {status.value: status.phrase for status in HTTPStatus}
_NO_DATA = object()  # cancelOrder/changeOrder answer without a `data` key


@dataclass
class _Fault:
    kind: str  # "fail" | "http" | "delay" | "drop"
    path: str
    times: int
    code: str = "ERR-5003"
    http_status: int = 503
    seconds: float = 0.0
    accept: bool = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # a benchmark may open many connections at once
    standin: GmoStandIn

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS lookup (getfqdn), which can stall a start."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (killed, timed out) is what clients do; anything
        else is printed as socketserver would."""
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)


class GmoStandIn:
    """A local GMO Coin REST server over one in-memory account.

    `start()` returns the base URL; clients append `/public` or `/private` as they would to
    `https://api.coin.z.com`.
    """

    def __init__(
        self,
        api_key: str = "standin-key",
        api_secret: str = "standin-secret",
        host: str = "127.0.0.1",
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.host = host
        self.exchange = Exchange()
        self.maintenance = False
        self.rate_limit_per_second: int | None = 20
        self.requests: list[tuple[str, str, str, str]] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()  # requests, faults, rate-limit windows (not the account)
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self.base_url = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self, port: int = 0) -> str:
        """Bind (a free port by default), serve in a daemon thread, return the base URL."""
        if self._server is not None:
            return self.base_url
        self._stopping.clear()
        server = _Server((self.host, port), _Handler)
        server.standin = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        bound_host, bound_port = server.server_address[:2]
        self.base_url = f"http://{bound_host}:{bound_port}"
        return self.base_url

    def stop(self) -> None:
        """Stop serving and close every open keep-alive connection, so no answer comes late."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> GmoStandIn:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ market and account
    @property
    def auto_fill_market(self) -> bool:
        return self.exchange.auto_fill_market

    @auto_fill_market.setter
    def auto_fill_market(self, value: bool) -> None:
        with self.exchange.lock:
            self.exchange.auto_fill_market = value

    @property
    def balances(self) -> dict[str, Decimal]:
        return self.exchange.balances

    @balances.setter
    def balances(self, value: dict[str, Decimal]) -> None:
        with self.exchange.lock:
            self.exchange.balances = {k: Decimal(v) for k, v in value.items()}

    def fill(
        self,
        order_id: str | int,
        size: Decimal | str,
        price: Decimal | str | None = None,
        fee: Decimal | str | None = None,
    ) -> str:
        return self.exchange.fill(order_id, size, price, fee)

    def market_trade(self, symbol: str, price: Decimal | str, size: Decimal | str) -> list[str]:
        return self.exchange.market_trade(symbol, price, size)

    def set_last_price(self, symbol: str, price: Decimal | str) -> None:
        self.exchange.set_last_price(symbol, price)

    def placements(self) -> int:
        with self.exchange.lock:
            return self.exchange.placements

    # ------------------------------------------------------------------ faults
    def _add_fault(self, fault: _Fault) -> None:
        if fault.times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(fault)

    def fail_next(self, path: str, code: str = "ERR-5003", times: int = 1) -> None:
        """Answer the next `times` requests to `path` with this envelope error (no effect)."""
        self._add_fault(_Fault("fail", path, times, code=code))

    def http_error_next(self, path: str, http_status: int = 503, times: int = 1) -> None:
        """Answer with a bare HTTP error and a short non-JSON body (no effect)."""
        self._add_fault(_Fault("http", path, times, http_status=http_status))

    def delay_next(self, path: str, seconds: float, accept: bool = True, times: int = 1) -> None:
        """Sleep before answering; with accept=True the request takes effect first."""
        self._add_fault(_Fault("delay", path, times, seconds=seconds, accept=accept))

    def drop_next(self, path: str, accept: bool = True, times: int = 1) -> None:
        """Close the socket unanswered; accept=True after the request took effect."""
        self._add_fault(_Fault("drop", path, times, accept=accept))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path == path:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # ------------------------------------------------------------------ auth and limits
    def _authenticate(self, headers: Any, method: str, path: str, body: bytes) -> None:
        key = headers.get("API-KEY")
        if not key:
            raise ExchangeError("ERR-5011")
        if key != self.api_key:
            raise ExchangeError("ERR-5012")
        stamp = headers.get("API-TIMESTAMP")
        if not stamp or not (stamp.isascii() and stamp.isdigit()):
            raise ExchangeError("ERR-5007")
        skew = int(stamp) - int(time.time() * 1000)
        if skew > TIMESTAMP_WINDOW_MS:
            raise ExchangeError("ERR-5008")
        if skew < -TIMESTAMP_WINDOW_MS:
            raise ExchangeError("ERR-5009")
        message = stamp.encode() + method.encode() + path.encode() + body
        expected = hmac.new(self.api_secret.encode(), message, hashlib.sha256).hexdigest()
        given = (headers.get("API-SIGN") or "").encode("utf-8", "replace")
        if not hmac.compare_digest(expected.encode(), given):
            raise ExchangeError("ERR-5010")

    def _check_rate(self, key: str, method: str) -> None:
        limit = self.rate_limit_per_second
        if limit is None:
            return
        bucket = (key, "GET" if method == "GET" else "POST")
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault(bucket, deque())
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= limit:
                raise ExchangeError("ERR-5003")
            window.append(now)

    # ------------------------------------------------------------------ routing
    def _dispatch(self, private: bool, method: str, path: str, query: str, body: bytes) -> Any:
        routes = _PRIVATE if private else _PUBLIC
        route = routes.get((method, path))
        if route is None:
            raise ExchangeError("ERR-5204")
        if method == "GET":
            params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        else:
            try:
                params = _loads(body) if body else {}
            except ValueError:
                raise ExchangeError("ERR-5106") from None
            if not isinstance(params, dict):
                raise ExchangeError("ERR-5106")
        return route(self, params)


# ---------------------------------------------------------------------- endpoint functions
def _ids(raw: str | None, limit: int = 10) -> list[int]:
    if not raw:
        raise ExchangeError("ERR-5106")
    parts = [p.strip() for p in raw.split(",")]
    if len(parts) > limit or not all(p.isdigit() for p in parts):
        raise ExchangeError("ERR-5106")
    return [int(p) for p in parts]


def _paging(params: dict[str, Any], max_count: int = 100) -> tuple[int, int]:
    try:
        page = int(params.get("page") or 1)
        count = int(params.get("count") or max_count)
    except ValueError:
        raise ExchangeError("ERR-5106") from None
    if page < 1 or count < 1 or count > max_count:
        raise ExchangeError("ERR-5106")
    return page, count


def _page(params: dict[str, Any], rows: list[Any], max_count: int = 100) -> dict[str, Any]:
    """GMO's pagination; an empty page is `{}` with no list, as GMO answers."""
    page, count = _paging(params, max_count)
    return _paged(page, count, rows[(page - 1) * count : page * count])


def _paged(page: int, count: int, chunk: list[Any]) -> dict[str, Any]:
    if not chunk:
        return {}
    return {"pagination": {"currentPage": page, "count": count}, "list": chunk}


def _symbol_param(params: dict[str, Any], required: bool = False) -> str | None:
    symbol = params.get("symbol") or None
    if required and symbol is None:
        raise ExchangeError("ERR-5106")
    return symbol


def _order(s: GmoStandIn, p: dict[str, Any]) -> Any:
    return str(s.exchange.place_order(p).order_id)


def _close_order(s: GmoStandIn, p: dict[str, Any]) -> Any:
    return str(s.exchange.close_order(p).order_id)


def _close_bulk(s: GmoStandIn, p: dict[str, Any]) -> Any:
    return str(s.exchange.close_bulk_order(p).order_id)


def _cancel_order(s: GmoStandIn, p: dict[str, Any]) -> Any:
    s.exchange.cancel_order(p.get("orderId"))
    return _NO_DATA


def _change_order(s: GmoStandIn, p: dict[str, Any]) -> Any:
    s.exchange.change_order(p)
    return _NO_DATA


def _cancel_orders(s: GmoStandIn, p: dict[str, Any]) -> Any:
    return s.exchange.cancel_orders(p.get("orderIds"))


def _cancel_bulk(s: GmoStandIn, p: dict[str, Any]) -> Any:
    return s.exchange.cancel_bulk(p)


def _orders(s: GmoStandIn, p: dict[str, Any]) -> Any:
    return {"list": s.exchange.get_orders(_ids(p.get("orderId")))}


def _active_orders(s: GmoStandIn, p: dict[str, Any]) -> Any:
    page, count = _paging(p)
    return _paged(page, count, s.exchange.active_orders(_symbol_param(p), page, count))


def _executions(s: GmoStandIn, p: dict[str, Any]) -> Any:
    order_id, execution_id = p.get("orderId"), p.get("executionId")
    if order_id and execution_id:
        raise ExchangeError("ERR-5208")
    if order_id:
        return {"list": s.exchange.executions_of_order(_ids(order_id, 1)[0])}
    return {"list": s.exchange.executions_by_id(_ids(execution_id))}


def _latest_executions(s: GmoStandIn, p: dict[str, Any]) -> Any:
    page, count = _paging(p)
    return _paged(page, count, s.exchange.latest_executions(_symbol_param(p), page, count))


def _open_positions(s: GmoStandIn, p: dict[str, Any]) -> Any:
    return _page(p, s.exchange.open_positions(_symbol_param(p)))


def _position_summary(s: GmoStandIn, p: dict[str, Any]) -> Any:
    return {"list": s.exchange.position_summary(_symbol_param(p))}


def _assets(s: GmoStandIn, p: dict[str, Any]) -> Any:
    return s.exchange.assets()


def _margin(s: GmoStandIn, p: dict[str, Any]) -> Any:
    return s.exchange.margin()


def _status(s: GmoStandIn, p: dict[str, Any]) -> Any:
    return {"status": "MAINTENANCE" if s.maintenance else "OPEN"}


def _ticker(s: GmoStandIn, p: dict[str, Any]) -> Any:
    return s.exchange.ticker(_symbol_param(p))


def _orderbooks(s: GmoStandIn, p: dict[str, Any]) -> Any:
    return s.exchange.orderbook(_symbol_param(p, required=True))


def _trades(s: GmoStandIn, p: dict[str, Any]) -> Any:
    page, count = _paging(p)
    symbol = _symbol_param(p, required=True)
    return _paged(page, count, s.exchange.public_trades(symbol, page, count))


def _symbols(s: GmoStandIn, p: dict[str, Any]) -> Any:
    return s.exchange.symbols()


_Route = Callable[[GmoStandIn, dict[str, Any]], Any]

_PRIVATE: dict[tuple[str, str], _Route] = {
    ("POST", "/v1/order"): _order,
    ("POST", "/v1/changeOrder"): _change_order,
    ("POST", "/v1/cancelOrder"): _cancel_order,
    ("POST", "/v1/cancelOrders"): _cancel_orders,
    ("POST", "/v1/cancelBulkOrder"): _cancel_bulk,
    ("POST", "/v1/closeOrder"): _close_order,
    ("POST", "/v1/closeBulkOrder"): _close_bulk,
    ("GET", "/v1/orders"): _orders,
    ("GET", "/v1/activeOrders"): _active_orders,
    ("GET", "/v1/executions"): _executions,
    ("GET", "/v1/latestExecutions"): _latest_executions,
    ("GET", "/v1/openPositions"): _open_positions,
    ("GET", "/v1/positionSummary"): _position_summary,
    ("GET", "/v1/account/assets"): _assets,
    ("GET", "/v1/account/margin"): _margin,
}

_PUBLIC: dict[tuple[str, str], _Route] = {
    ("GET", "/v1/status"): _status,
    ("GET", "/v1/ticker"): _ticker,
    ("GET", "/v1/orderbooks"): _orderbooks,
    ("GET", "/v1/trades"): _trades,
    ("GET", "/v1/symbols"): _symbols,
}


# ---------------------------------------------------------------------- the handler
class _Handler(BaseHTTPRequestHandler):
    """One keep-alive connection; every answer is written in one send with Content-Length."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in one write, but no Nagle delay on small answers anyway.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        standin = self.server.standin
        with standin._lock:
            standin._connections.add(self.connection)

    def finish(self) -> None:
        standin = self.server.standin
        with standin._lock:
            standin._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the stand-in runs inside test and benchmark processes."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # --------------------------------------------------------------- plumbing
    def _send(self, http_status: int, body: bytes, content_type: str) -> None:
        self.send_response(http_status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self._headers_buffer.append(b"\r\n" + body)
        try:
            self.flush_headers()
        except OSError:
            self.close_connection = True

    def _envelope(self, data: Any) -> None:
        payload: dict[str, Any] = {"status": 0}
        if data is not _NO_DATA:
            payload["data"] = data
        payload["responsetime"] = iso(now_utc())
        self._send(200, _dumps(payload), "application/json")

    def _error(self, error: ExchangeError) -> None:
        payload = {
            "status": error.status,
            "messages": [{"message_code": error.code, "message_string": error.message}],
            "responsetime": iso(now_utc()),
        }
        self._send(200, _dumps(payload), "application/json")

    def _drop(self) -> None:
        """Close the socket without a byte of answer, as a crashed proxy would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _handle(self, method: str) -> None:
        standin = self.server.standin
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(400, b"Bad Content-Length", "text/plain")
            return
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        raw_path = split.path
        if raw_path.startswith("/private/"):
            private, path = True, raw_path[len("/private") :]
        elif raw_path.startswith("/public/"):
            private, path = False, raw_path[len("/public") :]
        else:
            private, path = False, raw_path
        with standin._lock:
            standin.requests.append((method, path, split.query, body.decode("utf-8", "replace")))

        fault = standin._take_fault(path)
        if fault is not None:
            if fault.kind == "fail":
                self._error(ExchangeError(fault.code))
                return
            if fault.kind == "http":
                phrase = _PHRASES.get(fault.http_status, "Error")
                self._send(fault.http_status, phrase.encode(), "text/plain")
                return
            if fault.kind == "drop" and not fault.accept:
                self._drop()
                return
            if fault.kind == "delay" and not fault.accept:
                standin._stopping.wait(fault.seconds)

        data: Any = None
        refusal: ExchangeError | None = None
        try:
            data = self._process(standin, private, method, path, split.query, body)
        except ExchangeError as error:
            refusal = error
        except Exception:  # a stand-in bug: say so loudly, answer 500, keep serving
            traceback.print_exc()
            self._send(500, b"Internal Server Error (stand-in bug)", "text/plain")
            return

        if fault is not None and fault.kind == "drop":
            self._drop()
            return
        if fault is not None and fault.kind == "delay" and fault.accept:
            standin._stopping.wait(fault.seconds)
            if standin._stopping.is_set():
                self._drop()
                return
        if refusal is not None:
            self._error(refusal)
        else:
            self._envelope(data)

    def _process(
        self, standin: GmoStandIn, private: bool, method: str, path: str, query: str, body: bytes
    ) -> Any:
        if not raw_prefix_ok(self.path):
            raise ExchangeError("ERR-5204")
        if private:
            if standin.maintenance:
                raise ExchangeError("ERR-5201")
            standin._authenticate(self.headers, method, path, body)
            standin._check_rate(standin.api_key, method)
        elif standin.maintenance and path != "/v1/status":
            raise ExchangeError("ERR-5201")
        return standin._dispatch(private, method, path, query, body)


def raw_prefix_ok(path: str) -> bool:
    return path.startswith(("/private/v1/", "/public/v1/"))
