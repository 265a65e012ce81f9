"""A loopback stand-in for Binance's spot REST API, for ccxt's own `binance` client.

Why Binance: its spot API is a handful of form-encoded endpoints under `/api/v3`, one HMAC-
SHA256 signature over the query string, errors as `{"code": -NNNN, "msg": ...}` that ccxt maps
by code and message, and it keeps our client order id (`newClientOrderId`) and can look an
order up by it (`origClientOrderId`), which is what makes a lost placement answer recoverable.

Point ccxt at it with `urls={"public": server.api_url, "private": server.api_url}` and options
that load spot markets only (`fetchMarkets.types = ["spot"]`, no currencies, no margin).

`StandinServer` runs a `ThreadingHTTPServer` on 127.0.0.1 (port 0) in a daemon thread. It
checks the `X-MBX-APIKEY` header and the signature like Binance does, keeps every request in
`requests`, and lets a test inject a fault into the next `POST /api/v3/order`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from trading_engine_standins.ccxt_book import BinanceError, Book

API_KEY = "standin-api-key"
API_SECRET = "standin-api-secret"

FAULTS = (
    "rejected_funds",
    "rate_limited",
    "maintenance",
    "server_error",
    "timeout_after_accept",
    "drop_after_accept",
    "drop_before_accept",
)


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    params: dict[str, str]
    fault: str = ""


class StandinServer:
    """The exchange: an account `book`, a request log, and one pending placement fault."""

    def __init__(self, api_key: str = API_KEY, secret: str = API_SECRET, stall: float = 2.5):
        self.api_key, self.secret, self.stall_seconds = api_key, secret, stall
        self.book = Book()
        self.requests: list[SeenRequest] = []
        self.pending_fault = ""
        self.busy_reads = 0  # answer this many next non-placement requests with 429 / -1003
        self._log_lock = threading.Lock()
        self._stalled: list[threading.Event] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    @property
    def api_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/api/v3"

    def inject_fault(self, fault: str) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {FAULTS}")
        self.pending_fault = fault

    def take_fault(self) -> str:
        with self._log_lock:
            fault, self.pending_fault = self.pending_fault, ""
            return fault

    def take_busy_read(self) -> bool:
        with self._log_lock:
            if self.busy_reads <= 0:
                return False
            self.busy_reads -= 1
            return True

    def record(self, seen: SeenRequest) -> None:
        with self._log_lock:
            self.requests.append(seen)

    def placements(self) -> int:
        """Orders the exchange created (a request refused, or dropped before the exchange read
        it, created none)."""
        return len(self.book.orders)

    def stall(self) -> None:
        """Hold a handler thread past the client's timeout; `close` wakes it early."""
        event = threading.Event()
        self._stalled.append(event)
        event.wait(self.stall_seconds)

    def close(self) -> None:
        for event in self._stalled:
            event.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- dispatch -----------------------------------------------------------------------
    def answer(self, method: str, path: str, params: dict[str, str]) -> tuple[int, Any]:
        """(status, JSON body) for one authenticated-or-public request."""
        book = self.book
        routes: dict[tuple[str, str], Any] = {
            ("GET", "/api/v3/exchangeInfo"): lambda: book.exchange_info(),
            ("GET", "/api/v3/ping"): lambda: {},
            ("GET", "/api/v3/time"): lambda: {"serverTime": int(time.time() * 1000)},
            ("POST", "/api/v3/order"): lambda: book.place(params),
            ("GET", "/api/v3/order"): lambda: book.get(params),
            ("DELETE", "/api/v3/order"): lambda: book.cancel(params),
            ("GET", "/api/v3/openOrders"): lambda: book.open_orders(params),
            ("GET", "/api/v3/allOrders"): lambda: book.all_orders(params),
            ("GET", "/api/v3/myTrades"): lambda: book.my_trades(params),
            ("GET", "/api/v3/account"): lambda: book.account(),
        }
        route = routes.get((method, path))
        if route is None:
            return 404, {"code": -1000, "msg": f"Unknown path {method} {path}"}
        try:
            return 200, route()
        except BinanceError as error:
            return error.status, {"code": error.code, "msg": error.msg}

    def signature_error(self, headers: Any, query: str, body: str) -> BinanceError | None:
        """Binance's check: the API key header, a timestamp, and HMAC-SHA256(secret,
        query string + body) with the `signature` parameter taken out."""
        if headers.get("X-MBX-APIKEY") != self.api_key:
            return BinanceError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        total, signature = "", ""
        for part in (query, body):
            unsigned, _, found = part.partition("&signature=")
            total += unsigned if found else part
            signature = found or signature
        if "timestamp" not in dict(parse_qsl(total)):
            return BinanceError(
                400,
                -1102,
                "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
            )
        expected = hmac.new(self.secret.encode(), total.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return BinanceError(400, -1022, "Signature for this request is not valid.")
        return None


SIGNED_PATHS = {"/api/v3/order", "/api/v3/openOrders", "/api/v3/allOrders", "/api/v3/myTrades"}
SIGNED_PATHS |= {"/api/v3/account"}

# fault -> (HTTP status, body) for the faults that answer without creating the order
FAULT_ANSWERS: dict[str, tuple[int, Any]] = {
    "rejected_funds": (
        400,
        {"code": -2010, "msg": "Account has insufficient balance for requested action."},
    ),
    "rate_limited": (
        429,
        {
            "code": -1003,
            "msg": "Too much request weight used; current limit "
            "is 6000 request weight per 1 MINUTE.",
        },
    ),
    "maintenance": (503, {"code": 1, "msg": "System is under maintenance."}),
    "server_error": (503, "Service Unavailable"),
}


def _handler_for(server: StandinServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def _handle(self, method: str) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            params = dict(parse_qsl(split.query))
            params.update(parse_qsl(body))
            params.pop("signature", None)
            placing = method == "POST" and split.path == "/api/v3/order"
            fault = server.take_fault() if placing else ""
            if not placing and server.take_busy_read():
                fault = "rate_limited"
            server.record(SeenRequest(method, split.path, params, fault))
            if fault == "drop_before_accept":
                self.close_connection = True
                return
            if split.path in SIGNED_PATHS:
                refused = server.signature_error(self.headers, split.query, body)
                if refused is not None:
                    self._send(refused.status, {"code": refused.code, "msg": refused.msg})
                    return
            if fault in FAULT_ANSWERS:
                self._send(*FAULT_ANSWERS[fault])
                return
            status, payload = server.answer(method, split.path, params)
            if fault == "drop_after_accept":
                self.close_connection = True
                return
            if fault == "timeout_after_accept":
                server.stall()
            self._send(status, payload)

        def _send(self, status: int, payload: Any) -> None:
            is_text = isinstance(payload, str)
            data = (payload if is_text else json.dumps(payload)).encode()
            try:
                self.send_response(status)
                kind = "text/html" if is_text else "application/json;charset=UTF-8"
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (timeout fault): nothing to answer
                self.close_connection = True

    return Handler


def to_wire_symbol(symbol: str) -> str:
    """Engine symbols `BTC` / `BTC_JPY` as the stand-in's market ids (`BTCJPY`)."""
    base, _, quote = symbol.partition("_")
    return f"{base}{quote or 'JPY'}"


def trade(server: StandinServer, symbol: str, price: Decimal, size: Decimal) -> None:
    server.book.market_trade(to_wire_symbol(symbol), price, size)
