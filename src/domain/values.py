"""Value objects: the small, validated words the trading domain is written in.

Money and sizes are `Decimal` and must fit the tables' `DECIMAL(20,8)`: at most 8 places
after the point and 12 before it. Floats are refused outright: `0.1` as a float is not 0.1.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, localcontext
from enum import StrEnum
from typing import Self

from trading_engine.domain.errors import InvalidValue

SCALE = 8  # digits after the point in DECIMAL(20,8)
# Money arithmetic runs at this precision, whatever the caller's decimal context says:
# sums and products of DECIMAL(20,8) values (up to 40 digits) are then exact, and a replay
# computes the same numbers as the live aggregate did.
PRECISION = 60
INTEGER_DIGITS = 12  # digits before the point in DECIMAL(20,8)
ZERO = Decimal(0)


class _ParsedEnum(StrEnum):
    """A StrEnum whose `parse` names the field and the allowed values on bad input."""

    @classmethod
    def parse(cls, value: object) -> Self:
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().upper() if cls._upper() else str(value).strip())
        except ValueError:
            allowed = ", ".join(member.value for member in cls)
            raise InvalidValue(cls._field(), value, f"expected one of {allowed}") from None

    @classmethod
    def _upper(cls) -> bool:
        return True

    @classmethod
    def _field(cls) -> str:
        return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


class Side(_ParsedEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        """+1 for a buy (adds to a long), -1 for a sell."""
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(_ParsedEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"


class TimeInForce(_ParsedEnum):
    """GMO's names: FAK (fill and kill = IOC), FAS (fill and store = GTC), FOK, SOK (post-only)."""

    FAS = "FAS"
    FAK = "FAK"
    FOK = "FOK"
    SOK = "SOK"


class OrderStatus(_ParsedEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"

    @property
    def is_terminal(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED)

    @property
    def is_live(self) -> bool:
        return self in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


class PositionSide(_ParsedEnum):
    LONG = "LONG"
    SHORT = "SHORT"
    FLAT = "FLAT"


class SignalAction(_ParsedEnum):
    ENTER_LONG = "enter_long"
    ENTER_SHORT = "enter_short"
    EXIT = "exit"
    HOLD = "hold"

    @classmethod
    def _upper(cls) -> bool:
        return False


class CancelType(_ParsedEnum):
    """Why an order ended CANCELED; GMO's cancelType values plus our own causes."""

    USER = "USER"
    POSITION_LOSSCUT = "POSITION_LOSSCUT"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    INSUFFICIENT_MARGIN = "INSUFFICIENT_MARGIN"
    ACCOUNT_LOSSCUT = "ACCOUNT_LOSSCUT"
    MARGIN_CALL = "MARGIN_CALL"
    MARGIN_CALL_LOSSCUT = "MARGIN_CALL_LOSSCUT"
    EXPIRED = "EXPIRED"
    PRICE_LIMIT = "PRICE_LIMIT"
    SOK_TAKER = "SOK_TAKER"
    EXPIRATION = "EXPIRATION"
    EXCHANGE = "EXCHANGE"
    LOST = "LOST"  # the exchange kept saying it does not know the order


_EXCHANGE_RE = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
# A base, an optional `_` or `/` and quote, an optional `:` and settlement currency (ccxt's
# swaps, `BTC/USDT:USDT`); each part upper-case letters and digits, with inner dots for share
# classes (`BRK.B`). At most 20 characters: the tables' `VARCHAR(20)`.
# Words of upper-case letters and digits joined by single `_ - .` (a file's stem such as
# EURUSD_NO_VOLUME or BTC-USD_1H, GMO's BTC_JPY), an optional `/QUOTE` and `:SETTLE` (ccxt).
_SYMBOL_PART = r"[A-Z0-9]+(?:[._-][A-Z0-9]+)*"
_SYMBOL_RE = re.compile(rf"^{_SYMBOL_PART}(?:/{_SYMBOL_PART})?(?::{_SYMBOL_PART})?$")
SYMBOL_MAX_LENGTH = 20


@dataclass(frozen=True, slots=True)
class Exchange:
    """An exchange id as ccxt and our streams spell it: lower case, e.g. `gmo`, `binance`."""

    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not _EXCHANGE_RE.match(self.value):
            raise InvalidValue("exchange", self.value, "expected a lower-case id like 'gmo'")

    def __str__(self) -> str:
        return self.value


# Names the engine gives venues where no real money moves: a backtest run (`backtest_<id>`),
# paper trading (`paper_<exchange>`), the simulated exchange and the scripted demo. Records
# under these names never reach a tax or compliance export unless asked for.
SIMULATED_VENUE_PREFIXES = ("backtest_", "paper_")
SIMULATED_VENUES = frozenset({"simulated", "demo"})


def is_simulated_venue(exchange: str) -> bool:
    return exchange in SIMULATED_VENUES or exchange.startswith(SIMULATED_VENUE_PREFIXES)


def paper_venue(exchange: str) -> str:
    """Where paper trading on `exchange` records its orders and positions."""
    return exchange if is_simulated_venue(exchange) else f"paper_{exchange}"


@dataclass(frozen=True, slots=True)
class Symbol:
    """A tradable symbol: GMO's `BTC` (spot) / `BTC_JPY` (leverage), ccxt's `BTC/USDT` or
    `BTC/USDT:USDT`, or a bar file's name (`GOOG`, `EURUSD_1H`)."""

    value: str

    def __post_init__(self) -> None:
        if (
            not isinstance(self.value, str)
            or len(self.value) > SYMBOL_MAX_LENGTH
            or not _SYMBOL_RE.match(self.value)
        ):
            raise InvalidValue(
                "symbol",
                self.value,
                "expected upper-case letters and digits, joined by single _ - . / or :, "
                f"at most {SYMBOL_MAX_LENGTH} characters: e.g. BTC, BTC_JPY, BTC/USDT:USDT, "
                "GOOG, EURUSD_1H",
            )

    @property
    def is_gmo_leverage(self) -> bool:
        """GMO's margin symbols end in `_JPY`: every new order there opens a position."""
        return self.value.endswith("_JPY")

    def __str__(self) -> str:
        return self.value


_TIMEFRAME_RE = re.compile(r"^([1-9][0-9]{0,3})([smhdwM])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
# An average Gregorian month (365.2425 days / 12 = 30.436875 days): a month's *nominal* length.
NOMINAL_MONTH_SECONDS = 2_629_746
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)  # weeks are counted from here


@dataclass(frozen=True, slots=True)
class Timeframe:
    """A bar length: `1s`, `1m` (minutes), `5m`, `1h`, `1d`, `1w` (weeks), `1M`, `3M` (calendar
    months: a capital M; `1m` is a minute, as in ccxt).

    Seconds, minutes, hours and days are fixed lengths, aligned on the UTC epoch; a bar that
    starts at `t` ends at `t + seconds`. Weeks and months are *calendar* periods in UTC: weeks
    start on Monday 00:00 (as exchanges' weekly candles do), months on the 1st; n of them are
    counted from Monday 1970-01-05 or from January 1970 (`3M`: quarters, `12M`: years). A bar of
    a calendar timeframe is the period that holds its timestamp, wherever in the period the
    data stamped it (the 1st, the month's last day as pandas' `resample("ME")` does, its first
    or last trading day): it ends where that period ends (`end_of`), so a file with one bar
    per period never has a bar ending after the next one starts.

    `seconds` is exact for every unit but months; for months it is nominal, `n` times an
    average Gregorian month (2,629,746 s), for what only needs a length's size (how old a
    signal may get, how long an entry may wait). Bar boundaries are never computed from it:
    `start_of` and `end_of` are.
    """

    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not _TIMEFRAME_RE.match(self.value):
            raise InvalidValue(
                "timeframe",
                self.value,
                "expected e.g. 1s, 1m, 5m, 15m, 1h, 4h, 1d, 1w, 1M (M: calendar months)",
            )

    @property
    def count(self) -> int:
        """How many units: 5 for `5m`."""
        return int(self.value[:-1])

    @property
    def unit(self) -> str:
        """`s`, `m`, `h`, `d`, `w` or `M`."""
        return self.value[-1]

    @property
    def is_calendar(self) -> bool:
        """Weeks and months: a bar is the calendar period holding its timestamp."""
        return self.unit in ("w", "M")

    @property
    def is_monthly(self) -> bool:
        """Calendar months: no fixed length (`seconds` is nominal)."""
        return self.unit == "M"

    @property
    def seconds(self) -> int:
        """The length in seconds; for months nominal (see the class)."""
        if self.unit == "M":
            return self.count * NOMINAL_MONTH_SECONDS
        return self.count * _UNIT_SECONDS[self.unit]

    def start_of(self, moment: datetime) -> datetime:
        """Start of the interval that holds `moment` (UTC; epoch-aligned, or the calendar
        week / month for `w` / `M`)."""
        if self.unit == "M":
            utc = moment.astimezone(UTC)
            months = (utc.year - 1970) * 12 + utc.month - 1
            months -= months % self.count
            return datetime(1970 + months // 12, months % 12 + 1, 1, tzinfo=UTC)
        anchor = _FIRST_MONDAY if self.unit == "w" else _EPOCH
        elapsed = moment - anchor
        whole = elapsed.days * 86_400 + elapsed.seconds
        return anchor + timedelta(seconds=whole - whole % self.seconds)

    def end_of(self, start: datetime) -> datetime:
        """Where a bar stamped `start` ends: `start + seconds` for fixed lengths; for calendar
        weeks and months the end of the period holding `start` (2013-04-30 on `1M` ends at
        2013-05-01, 2024-01-01 at 2024-02-01)."""
        if self.unit == "M":
            first = self.start_of(start)
            months = first.year * 12 + first.month - 1 + self.count
            return datetime(months // 12, months % 12 + 1, 1, tzinfo=UTC)
        if self.unit == "w":
            return self.start_of(start) + timedelta(seconds=self.seconds)
        return start + timedelta(seconds=self.seconds)

    def __str__(self) -> str:
        return self.value


def decimal_of(field: str, value: object) -> Decimal:
    """Any exact number as a finite Decimal that fits DECIMAL(20,8); floats are refused."""
    if isinstance(value, (bool, float)):
        raise InvalidValue(field, value, "floats are inexact; pass a str or Decimal")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, (int, str)):
        try:
            number = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            raise InvalidValue(field, value, "not a number") from None
    else:
        raise InvalidValue(field, value, "expected a Decimal, int or str")
    if not number.is_finite():
        raise InvalidValue(field, value, "must be finite")
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    # integer digits first: quantizing a 30-digit number would overflow the context
    if number.adjusted() >= INTEGER_DIGITS:
        raise InvalidValue(field, value, f"more than {INTEGER_DIGITS} integer digits")
    if exponent < -SCALE:  # e.g. 1.500000000 is exact at 8 places: keep it at 8
        with money_context():
            at_scale = number.quantize(_AT_SCALE)
        if at_scale != number:
            raise InvalidValue(field, value, f"more than {SCALE} decimal places")
        number = at_scale
    return number


_AT_SCALE = Decimal(1).scaleb(-SCALE)


def positive(field: str, value: object) -> Decimal:
    number = decimal_of(field, value)
    if number <= ZERO:
        raise InvalidValue(field, value, "must be greater than zero")
    return number


def non_negative(field: str, value: object) -> Decimal:
    number = decimal_of(field, value)
    if number < ZERO:
        raise InvalidValue(field, value, "must not be negative")
    return number


def aware(field: str, value: object) -> datetime:
    """A timezone-aware datetime; naive ones are ambiguous and refused."""
    if not isinstance(value, datetime):
        raise InvalidValue(field, value, "expected a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidValue(field, value, "must be timezone-aware")
    return value


def money_context() -> AbstractContextManager[Context]:
    """`with money_context():` for every sum, product or ratio of prices, sizes and fees."""
    return localcontext(prec=PRECISION, rounding=ROUND_HALF_EVEN)


def text_of(value: object) -> str:
    """Free text (exchange messages, reasons) that any store can encode: lone surrogates
    from a badly decoded reply are kept visibly as `\\udXXX` instead of failing the save."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def identifier(field: str, value: object, max_length: int = 100) -> str:
    """A non-empty id string (signal ids, execution ids, exchange order ids)."""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InvalidValue(field, value, "expected a string id")
    text = text_of(value).strip()
    if not text or len(text) > max_length:
        raise InvalidValue(field, value, f"must be 1 to {max_length} characters")
    return text
