"""A Signal as one JSON document on `signal:{exchange}`, and back, exactly.

The document carries the seed's Signal fields plus the stable `signal_id`:

    {"signal_id": "...", "exchange": "gmo", "symbol": "BTC_JPY", "strategy": "ma_cross",
     "action": "enter_long", "confidence": "0.75", "price_ref": "15000000.5",
     "indicators": {"sma_fast": 15000010.25, "sma_slow": null}, "meta": {...},
     "timestamp": "2026-03-01T09:01:00+00:00"}

`confidence` and `price_ref` are decimal strings (`str(Decimal)`, so `0.010` stays `0.010`),
and `timestamp` is ISO-8601 with its offset (kept as given, microseconds included): both come
back identical. Indicators and meta are JSON objects: floats (shortest round-trip form), ints,
strings, None, lists and objects come back as they went; a Decimal inside them is written as
its string and comes back as that string; a datetime inside them comes back as its ISO text;
NaN and infinities become null (JSON has no such numbers).

A stream entry holds `signal_id` (to see the id without parsing) and `payload`, and may hold
`age_at_publish`: how many seconds, on the feed's clock, passed between the close of the
signal's bar and its publication (the reader adds the time the entry waited in the stream).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from trading_engine.adapters.marketdata.stream_group import Malformed, field_text
from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.models import Signal
from trading_engine.domain.values import Exchange, Symbol

_REQUIRED = (
    "signal_id",
    "exchange",
    "symbol",
    "strategy",
    "action",
    "confidence",
    "price_ref",
    "timestamp",
)


class MalformedSignal(Malformed):
    """A document or entry that cannot be a Signal."""


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    item = getattr(value, "item", None)  # numpy scalars (np.int64, np.float32, ...)
    if callable(item):
        return item()
    raise TypeError(f"cannot encode {type(value).__name__} in a signal: {value!r:.80}")


def signal_to_json(signal: Signal) -> str:
    document = {
        "signal_id": signal.signal_id,
        "exchange": str(signal.exchange),
        "symbol": str(signal.symbol),
        "strategy": signal.strategy,
        "action": signal.action.value,
        "confidence": str(signal.confidence),
        "price_ref": str(signal.price_ref),
        "indicators": signal.indicators,
        "meta": signal.meta,
        "timestamp": signal.timestamp.isoformat(),
    }
    return orjson.dumps(document, default=_default).decode("utf-8")


def signal_from_json(text: str | bytes) -> Signal:
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise MalformedSignal(f"bad-json: not JSON ({error})") from None
    if not isinstance(document, dict):
        raise MalformedSignal(f"bad-json: a JSON {type(document).__name__}, not an object")
    for name in _REQUIRED:
        if document.get(name) is None:
            raise MalformedSignal(f"missing-field: the signal has no {name!r}")
    for name in ("exchange", "symbol", "strategy", "action", "confidence", "price_ref"):
        if not isinstance(document[name], str) or not document[name]:
            raise MalformedSignal(
                f"invalid-value: {name} must be a non-empty string, got {document[name]!r:.80}"
            )
    indicators = document.get("indicators", {})
    meta = document.get("meta", {})
    for name, value in (("indicators", indicators), ("meta", meta)):
        if not isinstance(value, dict):
            raise MalformedSignal(f"invalid-value: {name} must be an object, got {value!r:.80}")
    try:
        return Signal(
            signal_id=document["signal_id"],
            exchange=Exchange(document["exchange"]),
            symbol=Symbol(document["symbol"]),
            strategy=document["strategy"],
            action=document["action"],
            confidence=document["confidence"],
            price_ref=document["price_ref"],
            timestamp=_timestamp(document["timestamp"]),
            indicators=indicators,
            meta=meta,
        )
    except InvalidValue as error:
        raise MalformedSignal(f"invalid-value: {error}") from None
    except ArithmeticError as error:  # decimal.InvalidOperation on absurdly long numbers
        raise MalformedSignal(
            f"invalid-value: a number the domain cannot hold ({error!r})"
        ) from None


def _timestamp(value: object) -> datetime:
    if not isinstance(value, str):
        raise MalformedSignal(f"bad-timestamp: {value!r:.80} is not an ISO-8601 string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedSignal(f"bad-timestamp: {value!r:.80} is not ISO-8601") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise MalformedSignal(f"bad-timestamp: {value!r:.80} has no UTC offset")
    return moment


# ----- stream entries -----------------------------------------------------------------------


def signal_entry_fields(signal: Signal, age: timedelta | None = None) -> dict[str, str]:
    """The fields of the stream entry that carries `signal` (and, when known, how long ago
    its bar closed as it is published, for the reader to judge how stale it is)."""
    fields = {"signal_id": signal.signal_id, "payload": signal_to_json(signal)}
    if age is not None:
        fields["age_at_publish"] = f"{age.total_seconds():.6f}"
    return fields


class ReadSignal(NamedTuple):
    signal: Signal
    age_at_publish: timedelta | None


def read_signal_entry(fields: Mapping[Any, Any], exchange: Exchange | str) -> ReadSignal:
    """`parse_signal_entry`, with the entry's `age_at_publish`. That field is advice: one
    that is missing or unreadable is None (the reader then judges age by its own clock),
    never a reason to drop the signal."""
    signal = parse_signal_entry(fields, exchange)
    raw = fields.get("age_at_publish", fields.get(b"age_at_publish"))
    try:
        seconds = float(_text("age_at_publish", raw)) if raw is not None else None
    except (MalformedSignal, ValueError):
        seconds = None
    if seconds is None or not math.isfinite(seconds):
        return ReadSignal(signal, None)
    return ReadSignal(signal, timedelta(seconds=max(seconds, 0.0)))


def parse_signal_entry(fields: Mapping[Any, Any], exchange: Exchange | str) -> Signal:
    """The Signal an entry of `signal:{exchange}` carries; `MalformedSignal` otherwise.

    The entry's `signal_id` must match the document's, and the signal must be for the
    stream's exchange: either mismatch means a writer bug, and acting on it would be wrong.
    """
    decoded = {_text("field name", k): _text(f"field {k!r}", v) for k, v in fields.items()}
    payload = decoded.get("payload")
    if payload is None:
        raise MalformedSignal("missing-payload: the entry has no payload field")
    entry_id = decoded.get("signal_id")
    if entry_id is None:
        raise MalformedSignal("missing-signal-id: the entry has no signal_id field")
    signal = signal_from_json(payload)
    if signal.signal_id != entry_id.strip():
        raise MalformedSignal(
            f"signal-id-mismatch: entry says {entry_id!r}, payload says {signal.signal_id!r}"
        )
    if str(signal.exchange) != str(exchange):
        raise MalformedSignal(
            f"wrong-exchange: a signal for {signal.exchange} on the {exchange} stream"
        )
    return signal


def _text(what: str, value: object) -> str:
    return field_text(what, value, MalformedSignal)
