"""GMO public WebSocket messages as market-data stream entries, in both directions.

An entry on `md:trade` / `md:orderbook` / `md:ticker` has two fields: `exchange` (`gmo`) and
`payload`, the WebSocket message exactly as GMO sent it (numbers as JSON strings, timestamps
`YYYY-MM-DDTHH:MM:SS.sssZ`). `parse_entry` turns one into a domain event or raises
`MalformedEntry`, whose reason starts with a short kind (`bad-json: ...`) that sources count
dead letters by. The `*_payload` functions are the inverse, for the replay tool.

Numbers must be JSON strings, as GMO sends them: a JSON number would already have been
through a float in most collectors, and the domain refuses inexact values anyway.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from trading_engine.adapters.marketdata.stream_group import (  # noqa: F401 (reason_kind)
    Malformed,
    field_text,
    reason_kind,
)
from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.market import BookLevel, MarketEvent, OrderBookSnapshot, Ticker, Trade
from trading_engine.domain.values import Exchange, Symbol, decimal_of

KNOWN_EXCHANGES: frozenset[str] = frozenset({"gmo"})
"""Exchanges whose collectors write GMO-format payloads; others are dead-lettered."""

CHANNEL_OF_STREAM: Mapping[str, str] = {
    "trade": "trades",
    "orderbook": "orderbooks",
    "ticker": "ticker",
}
STREAM_OF_CHANNEL: Mapping[str, str] = {v: k for k, v in CHANNEL_OF_STREAM.items()}

_TIMESTAMP_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$", re.ASCII
)


class MalformedEntry(Malformed):
    """An entry that cannot be a market event."""


# ----- parsing ------------------------------------------------------------------------------


def stream_kind(stream: str) -> str:
    """`trade`, `orderbook` or `ticker` for `md:trade`, `t1234:md:trade`, ...; else refused."""
    prefix, sep, suffix = stream.rpartition("md:")
    if not sep or suffix not in CHANNEL_OF_STREAM or (prefix and not prefix.endswith(":")):
        raise MalformedEntry(f"unknown-stream: {stream!r} is not md:trade/orderbook/ticker")
    return suffix


def parse_entry(
    stream: str | bytes,
    fields: Mapping[str, str] | Mapping[bytes, bytes] | Mapping[Any, Any],
    *,
    exchanges: Collection[str] = KNOWN_EXCHANGES,
) -> MarketEvent:
    """The domain event an entry carries, validated; `MalformedEntry` for anything wrong."""
    kind = stream_kind(_text("stream name", stream))
    decoded = decode_fields(fields)
    exchange = _exchange(decoded, exchanges)
    raw = decoded.get("payload")
    if raw is None:
        raise MalformedEntry("missing-payload: the entry has no payload field")
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise MalformedEntry(f"bad-json: payload is not JSON ({error})") from None
    if not isinstance(message, dict):
        raise MalformedEntry(f"bad-json: payload is a JSON {type(message).__name__}, not an object")
    expected = CHANNEL_OF_STREAM[kind]
    channel = message.get("channel")
    if channel != expected:
        raise MalformedEntry(f"wrong-channel: md:{kind} carries {expected!r}, got {channel!r}")
    try:
        if kind == "trade":
            return _trade(exchange, message)
        if kind == "orderbook":
            return _orderbook(exchange, message)
        return _ticker(exchange, message)
    except InvalidValue as error:
        raise MalformedEntry(f"invalid-value: {error}") from None
    except ArithmeticError as error:  # decimal.InvalidOperation on absurdly long numbers
        raise MalformedEntry(
            f"invalid-value: a number the domain cannot hold ({error!r})"
        ) from None


def decode_fields(fields: Mapping[Any, Any]) -> dict[str, str]:
    """An entry's fields as text, whatever the Redis client's `decode_responses` was."""
    if not isinstance(fields, Mapping):
        raise MalformedEntry(f"bad-entry: fields are a {type(fields).__name__}, not a mapping")
    return {_text("field name", k): _text(f"field {k!r}", v) for k, v in fields.items()}


def _text(what: str, value: object) -> str:
    return field_text(what, value, MalformedEntry)


def _exchange(fields: Mapping[str, str], exchanges: Collection[str]) -> Exchange:
    value = fields.get("exchange")
    if value is None:
        raise MalformedEntry("missing-exchange: the entry has no exchange field")
    if value not in exchanges:
        known = ", ".join(sorted(exchanges))
        raise MalformedEntry(f"unknown-exchange: {value!r} (known: {known})")
    try:
        return Exchange(value)
    except InvalidValue as error:
        raise MalformedEntry(f"unknown-exchange: {error}") from None


def _field(message: Mapping[str, Any], name: str, where: str = "payload") -> Any:
    if name not in message or message[name] is None:
        raise MalformedEntry(f"missing-field: {where} has no {name!r}")
    return message[name]


def _number(message: Mapping[str, Any], name: str, where: str = "payload") -> Decimal:
    """A decimal string as an exact Decimal; the domain constructor then checks its sign."""
    value = _field(message, name, where)
    if not isinstance(value, str):
        raise MalformedEntry(
            f"invalid-value: {where} {name!r} must be a decimal string, got {value!r}"
        )
    return decimal_of(name, value)


def _symbol(message: Mapping[str, Any]) -> Symbol:
    return Symbol(_field(message, "symbol"))


def parse_timestamp(value: object, name: str = "timestamp") -> datetime:
    """GMO's `2018-03-30T12:34:56.789Z` as an aware UTC datetime (digits past µs are cut)."""
    match = _TIMESTAMP_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise MalformedEntry(
            f"bad-timestamp: {name} {value!r} is not ISO-8601 UTC like 2018-03-30T12:34:56.789Z"
        )
    year, month, day, hour, minute, second, fraction = match.groups()
    micros = int((fraction or "0").ljust(6, "0")[:6])
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, UTC
        )
    except ValueError as error:
        raise MalformedEntry(f"bad-timestamp: {name} {value!r}: {error}") from None


def _trade(exchange: Exchange, message: Mapping[str, Any]) -> Trade:
    return Trade(
        exchange=exchange,
        symbol=_symbol(message),
        side=_field(message, "side"),
        price=_number(message, "price"),
        size=_number(message, "size"),
        timestamp=parse_timestamp(_field(message, "timestamp")),
    )


def _levels(message: Mapping[str, Any], name: str) -> tuple[BookLevel, ...]:
    levels = _field(message, name)
    if not isinstance(levels, list):
        raise MalformedEntry(f"invalid-value: {name!r} must be a list, got {levels!r:.80}")
    out = []
    for index, level in enumerate(levels):
        where = f"{name}[{index}]"
        if not isinstance(level, dict):
            raise MalformedEntry(f"invalid-value: {where} must be an object, got {level!r:.80}")
        try:
            out.append(BookLevel(_number(level, "price", where), _number(level, "size", where)))
        except InvalidValue as error:
            raise MalformedEntry(f"invalid-value: {where}: {error}") from None
        except ArithmeticError as error:
            raise MalformedEntry(f"invalid-value: {where}: {error!r}") from None
    return tuple(out)


def _orderbook(exchange: Exchange, message: Mapping[str, Any]) -> OrderBookSnapshot:
    return OrderBookSnapshot(
        exchange=exchange,
        symbol=_symbol(message),
        asks=_levels(message, "asks"),
        bids=_levels(message, "bids"),
        timestamp=parse_timestamp(_field(message, "timestamp")),
    )


def _ticker(exchange: Exchange, message: Mapping[str, Any]) -> Ticker:
    numbers = {
        name: _number(message, name) for name in ("ask", "bid", "high", "low", "last", "volume")
    }
    return Ticker(
        exchange=exchange,
        symbol=_symbol(message),
        timestamp=parse_timestamp(_field(message, "timestamp")),
        **numbers,
    )


# ----- encoding (the replay tool) -----------------------------------------------------------


def format_timestamp(moment: datetime) -> str:
    """GMO's form: UTC, milliseconds, `Z`. Microseconds are kept (6 digits) only when the
    time has them, so parsing the text gives back exactly the same instant."""
    utc = moment.astimezone(UTC)
    micros = utc.microsecond
    fraction = f"{micros // 1000:03d}" if micros % 1000 == 0 else f"{micros:06d}"
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{fraction}Z"


def _decimal_text(number: Decimal) -> str:
    return format(number, "f")  # never an exponent: 1E+6 is written 1000000


def _dumps(message: Mapping[str, Any]) -> str:
    return orjson.dumps(message).decode("utf-8")


def trade_payload(trade: Trade) -> str:
    return _dumps(
        {
            "channel": "trades",
            "price": _decimal_text(trade.price),
            "side": trade.side.value,
            "size": _decimal_text(trade.size),
            "timestamp": format_timestamp(trade.timestamp),
            "symbol": str(trade.symbol),
        }
    )


def orderbook_payload(book: OrderBookSnapshot) -> str:
    def levels(side: tuple[BookLevel, ...]) -> list[dict[str, str]]:
        return [
            {"price": _decimal_text(level.price), "size": _decimal_text(level.size)}
            for level in side
        ]

    return _dumps(
        {
            "channel": "orderbooks",
            "asks": levels(book.asks),
            "bids": levels(book.bids),
            "symbol": str(book.symbol),
            "timestamp": format_timestamp(book.timestamp),
        }
    )


def ticker_payload(ticker: Ticker) -> str:
    return _dumps(
        {
            "channel": "ticker",
            "ask": _decimal_text(ticker.ask),
            "bid": _decimal_text(ticker.bid),
            "high": _decimal_text(ticker.high),
            "last": _decimal_text(ticker.last),
            "low": _decimal_text(ticker.low),
            "symbol": str(ticker.symbol),
            "timestamp": format_timestamp(ticker.timestamp),
            "volume": _decimal_text(ticker.volume),
        }
    )


def payload_of(event: MarketEvent) -> str:
    if isinstance(event, Trade):
        return trade_payload(event)
    if isinstance(event, OrderBookSnapshot):
        return orderbook_payload(event)
    return ticker_payload(event)


def stream_of(event: MarketEvent, prefix: str = "") -> str:
    """The stream an event belongs on: `md:trade`, `md:orderbook` or `md:ticker` (+ prefix)."""
    if isinstance(event, Trade):
        return f"{prefix}md:trade"
    if isinstance(event, OrderBookSnapshot):
        return f"{prefix}md:orderbook"
    return f"{prefix}md:ticker"


def entry_fields(event: MarketEvent) -> dict[str, str]:
    """The fields of the stream entry that carries `event`, as the collector writes them."""
    return {"exchange": str(event.exchange), "payload": payload_of(event)}
