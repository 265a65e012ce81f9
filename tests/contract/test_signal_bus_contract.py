"""One signal-bus contract (publisher + subscriber), run against Redis and the in-process log.

The suite is abstract; each harness says how to open a publisher and a subscriber, write a
raw entry, and look at the stream, the pending list and the dead letters. Redis tests work
under a random key prefix (`t1a2b3c4d:signal:gmo`) and delete exactly those keys afterwards.
"""

from __future__ import annotations

import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
import redis

from trading_engine.adapters.marketdata.in_process import InProcessLog
from trading_engine.adapters.signals.codec import (
    MalformedSignal,
    signal_entry_fields,
    signal_from_json,
    signal_to_json,
)
from trading_engine.adapters.signals.in_process_bus import (
    InProcessSignalPublisher,
    InProcessSignalSubscriber,
)
from trading_engine.adapters.signals.redis_bus import RedisSignalPublisher, RedisSignalSubscriber
from trading_engine.domain.models import Signal
from trading_engine.domain.values import Exchange, Symbol
from trading_engine.ports.signal_bus import SignalEntry

JST = timezone(timedelta(hours=9))
GROUP = "trading-engine-execution"


def make_signal(n: int = 0, **changes: Any) -> Signal:
    fields: dict[str, Any] = {
        "signal_id": f"sig-{n}",
        "exchange": Exchange("gmo"),
        "symbol": Symbol("BTC_JPY"),
        "strategy": "ma_cross",
        "action": "enter_long",
        "confidence": Decimal("0.75"),
        "price_ref": Decimal("15000000.50"),
        "timestamp": datetime(2026, 3, 1, 18, 0, 0, 123456, tzinfo=JST) + timedelta(minutes=n),
        "indicators": {
            "sma_fast": 15000010.123456789,
            "sma_slow": None,
            "rsi": 0.1 + 0.2,  # 0.30000000000000004: a float must come back bit for bit
            "bars": 3,
        },
        "meta": {
            "reason": "golden cross — fast SMA crossed above slow SMA",
            "timeframe": "1m",
            "parameters": {"fast": 5, "slow": 20},
            "tags": ["a", "b"],
        },
    }
    fields.update(changes)
    return Signal(**fields)


def payload_with(**changes: Any) -> str:
    """The JSON document of `make_signal()`, with fields changed (None removes one)."""
    document = json.loads(signal_to_json(make_signal()))
    for key, value in changes.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return json.dumps(document)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ----- harnesses ----------------------------------------------------------------------------


class Harness(ABC):
    idle_ms: int

    def __init__(self, prefix: str) -> None:
        self.stream_prefix = f"{prefix}signal:"
        self.stream = f"{self.stream_prefix}gmo"
        self.dead_letter_stream = f"{self.stream}:dead-letter"

    @abstractmethod
    def publisher(self) -> Any: ...

    @abstractmethod
    def subscriber(self, consumer: str, exchange: str = "gmo") -> Any: ...

    @abstractmethod
    def append_raw(self, fields: Mapping[str, Any]) -> str: ...

    @abstractmethod
    def entries(self, stream: str | None = None) -> list[tuple[str, dict[str, str]]]: ...

    @abstractmethod
    def pending(self) -> dict[str, str]: ...

    @abstractmethod
    def let_idle_time_pass(self) -> None: ...

    def dead_letters(self) -> list[dict[str, str]]:
        return [fields for _, fields in self.entries(self.dead_letter_stream)]

    @abstractmethod
    def close(self) -> None: ...


class RedisHarness(Harness):
    idle_ms = 200

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(prefix)
        self.client = redis.Redis.from_url(url)  # bytes replies, as the service uses

    def publisher(self, dedupe_ttl_s: int = 7 * 86400) -> RedisSignalPublisher:
        return RedisSignalPublisher(self.client, self.stream_prefix, dedupe_ttl_s)

    def subscriber(self, consumer: str, exchange: str = "gmo") -> RedisSignalSubscriber:
        return RedisSignalSubscriber(
            self.client,
            exchange,
            group=GROUP,
            consumer=consumer,
            stream_prefix=self.stream_prefix,
            reclaim_idle_ms=self.idle_ms,
        )

    def append_raw(self, fields: Mapping[str, Any]) -> str:
        return _text(self.client.xadd(self.stream, dict(fields)))

    def entries(self, stream: str | None = None) -> list[tuple[str, dict[str, str]]]:
        return [
            (_text(entry_id), {_text(k): _text(v) for k, v in fields.items()})
            for entry_id, fields in self.client.xrange(stream or self.stream)
        ]

    def pending(self) -> dict[str, str]:
        rows = self.client.xpending_range(self.stream, GROUP, "-", "+", 10_000)
        return {_text(r["message_id"]): _text(r["consumer"]) for r in rows}

    def let_idle_time_pass(self) -> None:
        time.sleep(self.idle_ms / 1000 + 0.05)

    def close(self) -> None:
        self.client.close()


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class InProcessHarness(Harness):
    idle_ms = 30_000

    def __init__(self, prefix: str) -> None:
        super().__init__(prefix)
        self.clock = FakeMonotonic()
        self.log = InProcessLog(clock=self.clock)

    def publisher(self) -> InProcessSignalPublisher:
        return InProcessSignalPublisher(self.log, self.stream_prefix)

    def subscriber(self, consumer: str, exchange: str = "gmo") -> InProcessSignalSubscriber:
        return InProcessSignalSubscriber(
            self.log,
            exchange,
            group=GROUP,
            consumer=consumer,
            stream_prefix=self.stream_prefix,
            reclaim_idle_ms=self.idle_ms,
        )

    def append_raw(self, fields: Mapping[str, Any]) -> str:
        return self.log.append(self.stream, fields)

    def entries(self, stream: str | None = None) -> list[tuple[str, dict[str, str]]]:
        return self.log.entries(stream or self.stream)

    def pending(self) -> dict[str, str]:
        return {p.entry_id: p.consumer for p in self.log.pending(self.stream, GROUP)}

    def let_idle_time_pass(self) -> None:
        self.clock.now += self.idle_ms / 1000 + 1

    def close(self) -> None:
        """Nothing to release: the log goes with the harness."""


def signals_of(entries: list[SignalEntry]) -> list[Signal]:
    return [e.signal for e in entries]


def bad_entry(**changes: Any) -> dict[str, str]:
    return {"signal_id": "sig-0", "payload": payload_with(**changes)}


MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    # (case, entry fields, reason kind)
    ("payload not JSON", {"signal_id": "sig-0", "payload": "{oops"}, "bad-json"),
    ("payload a JSON list", {"signal_id": "sig-0", "payload": "[]"}, "bad-json"),
    ("no payload field", {"signal_id": "sig-0"}, "missing-payload"),
    ("no signal_id field", {"payload": payload_with()}, "missing-signal-id"),
    ("ids differ", {"signal_id": "sig-other", "payload": payload_with()}, "signal-id-mismatch"),
    ("another exchange's signal", bad_entry(exchange="binance"), "wrong-exchange"),
    ("no price_ref", bad_entry(price_ref=None), "missing-field"),
    ("confidence above 1", bad_entry(confidence="1.5"), "invalid-value"),
    ("confidence a float", bad_entry(confidence=0.5), "invalid-value"),
    ("negative price", bad_entry(price_ref="-1"), "invalid-value"),
    ("unknown action", bad_entry(action="buy_more"), "invalid-value"),
    ("bad symbol", bad_entry(symbol="btc jpy"), "invalid-value"),
    ("meta a list", bad_entry(meta=[1]), "invalid-value"),
    ("timestamp without offset", bad_entry(timestamp="2026-03-01T09:00:00"), "bad-timestamp"),
    ("timestamp not a date", bad_entry(timestamp="soon"), "bad-timestamp"),
]


class SignalBusContract:
    """Behaviour every signal bus must have. Subclasses provide `harness`."""

    @pytest.fixture
    def harness(self) -> Iterator[Harness]:
        raise NotImplementedError

    def test_a_published_signal_comes_back_exactly(self, harness: Harness) -> None:
        signal = make_signal()
        assert harness.publisher().publish(signal) is True
        subscriber = harness.subscriber("exec-1")
        (entry,) = subscriber.read(10, 100)
        got = entry.signal
        assert got == signal
        assert got.confidence.as_tuple() == Decimal("0.75").as_tuple()
        assert got.price_ref.as_tuple() == Decimal("15000000.50").as_tuple()
        assert got.timestamp == signal.timestamp
        assert got.timestamp.utcoffset() == timedelta(hours=9)
        assert got.indicators["rsi"] == 0.1 + 0.2
        assert type(got.indicators["rsi"]) is float
        assert got.indicators["sma_slow"] is None
        assert got.indicators["bars"] == 3
        assert got.meta == signal.meta
        assert entry.entry_id == harness.entries()[0][0]
        assert harness.entries()[0][1]["signal_id"] == "sig-0"

    def test_publishing_the_same_signal_twice_adds_one_entry(self, harness: Harness) -> None:
        publisher = harness.publisher()
        assert publisher.publish(make_signal()) is True
        assert publisher.publish(make_signal()) is False
        # a decision recomputed differently after a restart keeps its id: still one entry
        assert harness.publisher().publish(make_signal(action="exit")) is False
        assert len(harness.entries()) == 1
        assert signals_of(harness.subscriber("exec-1").read(10, 50)) == [make_signal()]

    def test_signals_come_out_in_publishing_order(self, harness: Harness) -> None:
        publisher = harness.publisher()
        signals = [make_signal(n) for n in range(5)]
        assert all(publisher.publish(s) for s in signals)
        subscriber = harness.subscriber("exec-1")
        assert signals_of(subscriber.read(3, 50)) == signals[:3]
        assert signals_of(subscriber.read(3, 50)) == signals[3:]
        assert subscriber.read(3, 10) == []

    def test_each_exchange_has_its_own_stream(self, harness: Harness) -> None:
        publisher = harness.publisher()
        binance = make_signal(1, exchange=Exchange("binance"), symbol=Symbol("BTC/USDT"))
        assert publisher.publish(make_signal(0))
        assert publisher.publish(binance)
        assert signals_of(harness.subscriber("exec-1").read(10, 50)) == [make_signal(0)]
        assert signals_of(harness.subscriber("exec-1", "binance").read(10, 50)) == [binance]

    def test_unacknowledged_signals_come_back_after_a_restart(self, harness: Harness) -> None:
        publisher = harness.publisher()
        for n in range(3):
            publisher.publish(make_signal(n))
        first = harness.subscriber("exec-1")
        assert first.recover() == []
        batch = first.read(10, 50)
        first.ack(batch[:1])
        first.close()

        restarted = harness.subscriber("exec-1")
        recovered = restarted.recover()
        assert signals_of(recovered) == [make_signal(1), make_signal(2)]
        assert [e.entry_id for e in recovered] == [e.entry_id for e in batch[1:]]
        assert restarted.stats.reclaimed == 2
        assert restarted.read(10, 10) == []
        restarted.ack(recovered)
        assert harness.pending() == {}
        assert harness.subscriber("exec-1").recover() == []

    def test_a_crashed_subscribers_signals_are_claimed_after_the_idle_time(
        self, harness: Harness
    ) -> None:
        harness.publisher().publish(make_signal())
        crashed = harness.subscriber("exec-1")
        assert len(crashed.read(10, 50)) == 1
        assert harness.subscriber("exec-2").recover() == []
        harness.let_idle_time_pass()
        taker = harness.subscriber("exec-2")
        assert signals_of(taker.recover()) == [make_signal()]
        assert set(harness.pending().values()) == {"exec-2"}

    def test_no_signal_goes_to_two_subscribers_of_the_group(self, harness: Harness) -> None:
        publisher = harness.publisher()
        for n in range(12):
            publisher.publish(make_signal(n))
        a, b = harness.subscriber("a"), harness.subscriber("b")
        got_a, got_b = [], []
        while True:
            batch_a, batch_b = a.read(2, 20), b.read(3, 20)
            got_a += [e.signal.signal_id for e in batch_a]
            got_b += [e.signal.signal_id for e in batch_b]
            if not batch_a and not batch_b:
                break
        assert got_a
        assert got_b
        assert sorted(got_a + got_b) == sorted(f"sig-{n}" for n in range(12))

    @pytest.mark.parametrize(
        ("fields", "kind"), [pytest.param(f, k, id=case) for case, f, k in MALFORMED]
    )
    def test_a_malformed_signal_is_dead_lettered_acknowledged_and_counted(
        self, harness: Harness, fields: dict[str, Any], kind: str
    ) -> None:
        publisher = harness.publisher()
        publisher.publish(make_signal(1))
        bad = harness.append_raw(fields)
        publisher.publish(make_signal(2))
        subscriber = harness.subscriber("exec-1")
        assert signals_of(subscriber.read(10, 50)) == [make_signal(1), make_signal(2)]
        (letter,) = harness.dead_letters()
        assert set(letter) == {"source_stream", "source_id", "reason", "fields"}
        assert letter["source_stream"] == harness.stream
        assert letter["source_id"] == bad
        assert letter["reason"].startswith(f"{kind}: ")
        assert json.loads(letter["fields"]) == fields
        assert bad not in harness.pending()
        assert subscriber.stats.dead_lettered == 1
        assert subscriber.stats.dead_letter_reasons == {kind: 1}
        assert harness.subscriber("exec-1").recover() != []  # the good ones, not acked yet
        assert bad not in harness.pending()


class TestInProcessSignalBus(SignalBusContract):
    @pytest.fixture
    def harness(self) -> Harness:
        return InProcessHarness("t-local:")


class TestRedisSignalBus(SignalBusContract):
    @pytest.fixture
    def harness(self, redis_url: str, redis_prefix: str) -> Iterator[Harness]:
        harness = RedisHarness(redis_url, redis_prefix)
        yield harness
        harness.close()

    @pytest.fixture
    def redis_harness(self, harness: Harness) -> RedisHarness:
        assert isinstance(harness, RedisHarness)
        return harness

    def test_the_dedupe_mark_expires_after_the_ttl(self, redis_harness: RedisHarness) -> None:
        client = redis_harness.client
        publisher = redis_harness.publisher(dedupe_ttl_s=3600)
        assert publisher.publish(make_signal())
        mark = f"{redis_harness.stream}:published:sig-0"
        assert 3590 <= client.ttl(mark) <= 3600
        client.delete(mark)  # as if the TTL had run out: the same id may be published again
        assert publisher.publish(make_signal())
        assert len(redis_harness.entries()) == 2

    def test_a_failed_add_leaves_no_mark(self, redis_harness: RedisHarness) -> None:
        client = redis_harness.client
        client.set(redis_harness.stream, "not a stream")
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            redis_harness.publisher().publish(make_signal())
        assert not client.exists(f"{redis_harness.stream}:published:sig-0")
        client.delete(redis_harness.stream)
        assert redis_harness.publisher().publish(make_signal()) is True

    def test_a_decoding_client_reads_the_same_signals(
        self, redis_harness: RedisHarness, redis_url: str
    ) -> None:
        text_client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            publisher = RedisSignalPublisher(text_client, redis_harness.stream_prefix)
            assert publisher.publish(make_signal()) is True
            assert publisher.publish(make_signal()) is False
            subscriber = RedisSignalSubscriber(
                text_client, "gmo", consumer="exec-str", stream_prefix=redis_harness.stream_prefix
            )
            (entry,) = subscriber.read(10, 50)
            assert entry.signal == make_signal()
            subscriber.ack([entry])
            assert redis_harness.pending() == {}
        finally:
            text_client.close()


# ----- the codec on its own -----------------------------------------------------------------


def test_the_document_carries_the_seed_fields_and_the_id() -> None:
    document = json.loads(signal_to_json(make_signal()))
    assert document == {
        "signal_id": "sig-0",
        "exchange": "gmo",
        "symbol": "BTC_JPY",
        "strategy": "ma_cross",
        "action": "enter_long",
        "confidence": "0.75",
        "price_ref": "15000000.50",
        "indicators": {
            "sma_fast": 15000010.123456789,
            "sma_slow": None,
            "rsi": 0.30000000000000004,
            "bars": 3,
        },
        "meta": make_signal().meta,
        "timestamp": "2026-03-01T18:00:00.123456+09:00",
    }
    assert signal_entry_fields(make_signal()) == {
        "signal_id": "sig-0",
        "payload": signal_to_json(make_signal()),
    }


@pytest.mark.parametrize(
    ("confidence", "price_ref", "timestamp"),
    [
        ("0", "0.00000001", datetime(2026, 1, 1, tzinfo=UTC)),
        ("1", "99999999999.99999999", datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=JST)),
        ("0.10", "1E+3", datetime(2026, 6, 30, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_decimals_and_timestamps_round_trip_exactly(
    confidence: str, price_ref: str, timestamp: datetime
) -> None:
    signal = make_signal(
        confidence=Decimal(confidence), price_ref=Decimal(price_ref), timestamp=timestamp
    )
    back = signal_from_json(signal_to_json(signal))
    assert back == signal
    assert back.confidence.as_tuple() == signal.confidence.as_tuple()
    assert back.price_ref.as_tuple() == signal.price_ref.as_tuple()
    assert back.timestamp.utcoffset() == timestamp.utcoffset()


def test_indicator_values_of_other_types_are_written_as_documented() -> None:
    signal = make_signal(
        indicators={
            "exact": Decimal("1.10"),
            "nan": math.nan,
            "inf": math.inf,
            "np_float": np.float64(0.25),
            "np_int": np.int64(7),
        },
        meta={"bar_start": datetime(2026, 3, 1, 9, 0, tzinfo=UTC)},
    )
    back = signal_from_json(signal_to_json(signal))
    assert back.indicators == {
        "exact": "1.10",
        "nan": None,
        "inf": None,
        "np_float": 0.25,
        "np_int": 7,
    }
    assert back.meta == {"bar_start": "2026-03-01T09:00:00+00:00"}
    with pytest.raises(TypeError):
        signal_to_json(make_signal(meta={"values": {1, 2}}))


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("", "bad-json"),
        (b"\xff", "bad-json"),
        ("null", "bad-json"),
        (payload_with(signal_id=None), "missing-field"),
        (payload_with(timestamp=None), "missing-field"),
        (payload_with(signal_id=""), "invalid-value"),
        (payload_with(strategy=""), "invalid-value"),
        (payload_with(confidence=1), "invalid-value"),
        (payload_with(price_ref="0.000000001"), "invalid-value"),
        (payload_with(price_ref="9" * 40 + ".123456789"), "invalid-value"),
        (payload_with(indicators="rsi"), "invalid-value"),
        (payload_with(timestamp=1772355600), "bad-timestamp"),
    ],
)
def test_bad_documents_are_malformed_signals(text: str | bytes, kind: str) -> None:
    with pytest.raises(MalformedSignal) as refused:
        signal_from_json(text)
    assert refused.value.kind == kind
    assert isinstance(refused.value, ValueError)


def test_indicators_and_meta_may_be_left_out() -> None:
    signal = signal_from_json(payload_with(indicators=None, meta=None))
    assert signal.indicators == {}
    assert signal.meta == {}
