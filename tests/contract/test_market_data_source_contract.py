"""One market-data source contract, run against every adapter: Redis Streams (with a bytes
client and with a `decode_responses=True` client) and the in-process log.

An abstract suite with the behaviour, one small harness per adapter that says how to write
entries, open a source, look at the pending list and the dead letters, and let time pass.
Redis tests work under a random key prefix (`t1a2b3c4d:md:trade`) and delete those keys.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis

from trading_engine.adapters.marketdata.gmo_messages import (
    MalformedEntry,
    entry_fields,
    format_timestamp,
    orderbook_payload,
    parse_entry,
    stream_kind,
    stream_of,
    ticker_payload,
    trade_payload,
)
from trading_engine.adapters.marketdata.in_process import (
    InProcessLog,
    InProcessSource,
    InProcessTransport,
)
from trading_engine.adapters.marketdata.redis_streams import RedisStreamsSource
from trading_engine.adapters.marketdata.stream_group import StreamGroupReader, id_key
from trading_engine.domain.errors import InvalidValue
from trading_engine.domain.market import BookLevel, MarketEvent, OrderBookSnapshot, Ticker, Trade
from trading_engine.domain.values import Exchange, Side, Symbol
from trading_engine.ports.market_data import MarketEntry

GROUP = "trading-engine-strategy"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
GMO = Exchange("gmo")
BTC = Symbol("BTC_JPY")


def trade(n: int, price: str = "15000000", size: str = "0.01", side: Side = Side.BUY) -> Trade:
    at = T0 + timedelta(milliseconds=n)
    return Trade(GMO, BTC, side, Decimal(price) + n, Decimal(size), at)


def ticker(n: int) -> Ticker:
    return Ticker(
        GMO,
        BTC,
        ask=Decimal("15000100") + n,
        bid=Decimal("15000000") + n,
        high=Decimal("15100000"),
        low=Decimal("14900000"),
        last=Decimal("15000050") + n,
        volume=Decimal("1234.5678"),
        timestamp=T0 + timedelta(milliseconds=n),
    )


def book(n: int) -> OrderBookSnapshot:
    return OrderBookSnapshot(
        GMO,
        BTC,
        asks=(level(15000100 + n, "0.5"), level(15000200, "1")),
        bids=(level(15000000 + n, "0.25"), level(14999000, "2")),
        timestamp=T0 + timedelta(milliseconds=n),
    )


def level(price: int, size: str) -> BookLevel:
    return BookLevel(Decimal(price), Decimal(size))


def trade_message(**changes: Any) -> str:
    """A GMO trades message as JSON text, with fields changed (None removes one)."""
    message: dict[str, Any] = {
        "channel": "trades",
        "price": "750760",
        "side": "BUY",
        "size": "0.1",
        "timestamp": "2018-03-30T12:34:56.789Z",
        "symbol": "BTC",
    }
    message.update(changes)
    return json.dumps({k: v for k, v in message.items() if v is not None})


def gmo(payload: str) -> dict[str, str]:
    return {"exchange": "gmo", "payload": payload}


# ----- harnesses ----------------------------------------------------------------------------


class Harness(ABC):
    """How a test writes entries, opens sources and looks inside one kind of store."""

    idle_ms: int
    reads_non_utf8 = True  # a client that decodes replies itself fails before we see them

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.trade_stream = f"{prefix}md:trade"
        self.orderbook_stream = f"{prefix}md:orderbook"
        self.ticker_stream = f"{prefix}md:ticker"
        self.dead_letter_stream = f"{prefix}md:dead-letter"
        self.streams = (self.trade_stream, self.orderbook_stream, self.ticker_stream)
        self.rank = {stream: index for index, stream in enumerate(self.streams)}

    def stream_for(self, event: MarketEvent) -> str:
        return stream_of(event, self.prefix)

    def write(self, *events: MarketEvent) -> list[tuple[str, str]]:
        """Append events as the collector would; returns their (stream, id)."""
        written = []
        for event in events:
            stream = self.stream_for(event)
            written.append((stream, self.append(stream, entry_fields(event))))
        return written

    def in_read_order(self, refs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """The order a source hands entries out: by id, then by the stream's place."""
        return sorted(refs, key=lambda ref: (*id_key(ref[1]), self.rank[ref[0]]))

    def assert_delivered_in_order(
        self,
        batches: Sequence[Sequence[tuple[str, str]]],
        written: Sequence[tuple[str, str]],
        skipped: Sequence[Any] = (),
    ) -> None:
        """What a source promises over several reads: every entry once, each batch in id
        order, each stream in the order it was written. (Ids of different streams compare
        only within a batch: an entry of another stream may arrive later with a smaller id.)"""
        delivered = [ref for batch in batches for ref in batch]
        expected = [ref for ref in written if ref not in set(refs(skipped))]
        assert sorted(delivered) == sorted(expected)
        for batch in batches:
            assert list(batch) == self.in_read_order(batch)
        for stream in self.streams:
            assert [r for r in delivered if r[0] == stream] == [
                r for r in written if r[0] == stream and r in set(delivered)
            ]

    @abstractmethod
    def append(self, stream: str, fields: Mapping[str, Any]) -> str: ...

    @abstractmethod
    def source(
        self, consumer: str, *, streams: Sequence[str] | None = None, group: str = GROUP
    ) -> Any: ...

    @abstractmethod
    def pending(self, stream: str, group: str = GROUP) -> dict[str, str]:
        """Pending entry id → consumer."""

    @abstractmethod
    def dead_letters(self) -> list[dict[str, str]]: ...

    @abstractmethod
    def let_idle_time_pass(self) -> None:
        """Make every pending entry older than the reclaim idle time."""

    @abstractmethod
    def delete(self, stream: str, entry_id: str) -> None: ...

    @abstractmethod
    def close(self) -> None: ...


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisHarness(Harness):
    idle_ms = 200  # long enough that "not idle yet" holds between two calls on a busy machine

    def __init__(self, url: str, prefix: str, decode_responses: bool) -> None:
        super().__init__(prefix)
        self.client = redis.Redis.from_url(url, decode_responses=decode_responses)
        self.reads_non_utf8 = not decode_responses

    def append(self, stream: str, fields: Mapping[str, Any]) -> str:
        return _text(self.client.xadd(stream, dict(fields)))

    def source(
        self, consumer: str, *, streams: Sequence[str] | None = None, group: str = GROUP
    ) -> RedisStreamsSource:
        return RedisStreamsSource(
            self.client,
            streams or self.streams,
            group,
            consumer,
            self.dead_letter_stream,
            reclaim_idle_ms=self.idle_ms,
        )

    def pending(self, stream: str, group: str = GROUP) -> dict[str, str]:
        rows = self.client.xpending_range(stream, group, "-", "+", 100_000)
        return {_text(row["message_id"]): _text(row["consumer"]) for row in rows}

    def dead_letters(self) -> list[dict[str, str]]:
        return [
            {_text(k): _text(v) for k, v in fields.items()}
            for _, fields in self.client.xrange(self.dead_letter_stream)
        ]

    def let_idle_time_pass(self) -> None:
        time.sleep(self.idle_ms / 1000 + 0.05)

    def delete(self, stream: str, entry_id: str) -> None:
        self.client.xdel(stream, entry_id)

    def close(self) -> None:
        self.client.close()


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InProcessHarness(Harness):
    idle_ms = 30_000

    def __init__(self, prefix: str) -> None:
        super().__init__(prefix)
        self.clock = FakeMonotonic()
        self.log = InProcessLog(clock=self.clock)

    def append(self, stream: str, fields: Mapping[str, Any]) -> str:
        return self.log.append(stream, fields)

    def source(
        self, consumer: str, *, streams: Sequence[str] | None = None, group: str = GROUP
    ) -> InProcessSource:
        return InProcessSource(
            self.log,
            streams or self.streams,
            group,
            consumer,
            self.dead_letter_stream,
            reclaim_idle_ms=self.idle_ms,
        )

    def pending(self, stream: str, group: str = GROUP) -> dict[str, str]:
        return {p.entry_id: p.consumer for p in self.log.pending(stream, group)}

    def dead_letters(self) -> list[dict[str, str]]:
        return [fields for _, fields in self.log.entries(self.dead_letter_stream)]

    def let_idle_time_pass(self) -> None:
        self.clock.advance(self.idle_ms / 1000 + 1)

    def delete(self, stream: str, entry_id: str) -> None:
        self.log.delete(stream, entry_id)

    def close(self) -> None:
        """Nothing to release: the log goes with the harness."""


def refs(entries: Sequence[MarketEntry]) -> list[tuple[str, str]]:
    return [(e.stream, e.entry_id) for e in entries]


def drain(source: Any, max_count: int = 100) -> list[MarketEntry]:
    out: list[MarketEntry] = []
    while batch := source.read(max_count, 50):
        out.extend(batch)
    return out


# ----- the contract -------------------------------------------------------------------------


MALFORMED: list[tuple[str, str, dict[str, Any], str]] = [
    # (case, stream, fields, reason kind)
    ("not json", "trade", gmo("{not json"), "bad-json"),
    ("json but not an object", "trade", gmo('["trades"]'), "bad-json"),
    ("wrong channel", "trade", gmo(trade_message(channel="ticker")), "wrong-channel"),
    ("ticker on the trade stream", "trade", gmo(ticker_payload(ticker(0))), "wrong-channel"),
    ("trade on the book stream", "orderbook", gmo(trade_message()), "wrong-channel"),
    ("negative size", "trade", gmo(trade_message(size="-0.1")), "invalid-value"),
    ("zero price", "trade", gmo(trade_message(price="0")), "invalid-value"),
    ("non-numeric price", "trade", gmo(trade_message(price="abc")), "invalid-value"),
    ("price as a JSON number", "trade", gmo(trade_message(price=750760)), "invalid-value"),
    ("nine decimal places", "trade", gmo(trade_message(size="0.000000001")), "invalid-value"),
    (
        "forty-digit price",
        "trade",
        gmo(trade_message(price="1" * 30 + ".123456789")),
        "invalid-value",
    ),
    ("bad side", "trade", gmo(trade_message(side="LONG")), "invalid-value"),
    ("bad symbol", "trade", gmo(trade_message(symbol="btc jpy")), "invalid-value"),
    ("missing size", "trade", gmo(trade_message(size=None)), "missing-field"),
    ("missing symbol", "trade", gmo(trade_message(symbol=None)), "missing-field"),
    (
        "timestamp without zone",
        "trade",
        gmo(trade_message(timestamp="2018-03-30T12:34:56.789")),
        "bad-timestamp",
    ),
    (
        "timestamp in JST",
        "trade",
        gmo(trade_message(timestamp="2018-03-30T21:34:56.789+09:00")),
        "bad-timestamp",
    ),
    ("timestamp not a date", "trade", gmo(trade_message(timestamp="yesterday")), "bad-timestamp"),
    (
        "impossible date",
        "trade",
        gmo(trade_message(timestamp="2018-02-30T12:34:56.789Z")),
        "bad-timestamp",
    ),
    (
        "unknown exchange",
        "trade",
        {"exchange": "kraken", "payload": trade_message()},
        "unknown-exchange",
    ),
    ("missing exchange field", "trade", {"payload": trade_message()}, "missing-exchange"),
    ("missing payload field", "trade", {"exchange": "gmo"}, "missing-payload"),
    (
        "bids not descending",
        "orderbook",
        gmo(
            '{"channel":"orderbooks","asks":[],"bids":[{"price":"1","size":"1"},'
            '{"price":"2","size":"1"}],"symbol":"BTC","timestamp":"2018-03-30T12:34:56.789Z"}'
        ),
        "invalid-value",
    ),
    (
        "book level without size",
        "orderbook",
        gmo(
            '{"channel":"orderbooks","asks":[{"price":"1"}],"bids":[],"symbol":"BTC",'
            '"timestamp":"2018-03-30T12:34:56.789Z"}'
        ),
        "missing-field",
    ),
    (
        "ticker without volume",
        "ticker",
        gmo(
            '{"channel":"ticker","ask":"2","bid":"1","high":"3","last":"2","low":"1",'
            '"symbol":"BTC","timestamp":"2018-03-30T12:34:56.789Z"}'
        ),
        "missing-field",
    ),
]


class MarketDataSourceContract:
    """Behaviour every market-data source must have. Subclasses provide `harness`."""

    @pytest.fixture
    def harness(self) -> Iterator[Harness]:
        raise NotImplementedError

    # ----- order and batches ----------------------------------------------------------------

    def test_entries_come_out_in_order_as_domain_objects(self, harness: Harness) -> None:
        events: list[MarketEvent] = [trade(0), ticker(1), trade(2), book(3), trade(4), ticker(5)]
        written = harness.write(*events)
        source = harness.source("c1")
        batch = source.read(100, 100)
        assert refs(batch) == harness.in_read_order(written)
        by_ref = dict(zip(written, events, strict=True))
        assert [e.event for e in batch] == [by_ref[r] for r in refs(batch)]
        for stream in harness.streams:  # and each stream in the order it was written
            assert [e.entry_id for e in batch if e.stream == stream] == [
                entry_id for s, entry_id in written if s == stream
            ]
        assert isinstance(batch[0].event.timestamp, datetime)
        assert all(e.event.timestamp.utcoffset() == timedelta(0) for e in batch)
        assert source.stats.delivered == 6
        assert source.read(100, 10) == []

    def test_documented_gmo_messages_are_read(self, harness: Harness) -> None:
        harness.append(harness.trade_stream, gmo(trade_message()))
        harness.append(
            harness.ticker_stream,
            gmo(
                '{"channel":"ticker","ask":"750760","bid":"750600","high":"762302",'
                '"last":"756662","low":"704874","symbol":"BTC",'
                '"timestamp":"2018-03-30T12:34:56.789Z","volume":"194785.8484"}'
            ),
        )
        harness.append(
            harness.orderbook_stream,
            gmo(
                '{"channel":"orderbooks","asks":[{"price":"455659","size":"0.1"}],'
                '"bids":[{"price":"455665","size":"0.1"}],"symbol":"BTC",'
                '"timestamp":"2018-03-30T12:34:56.789Z"}'
            ),
        )
        events = [e.event for e in harness.source("c1").read(10, 100)]
        at = datetime(2018, 3, 30, 12, 34, 56, 789000, tzinfo=UTC)
        btc = Symbol("BTC")
        assert {type(e).__name__: e for e in events} == {
            "Trade": Trade(GMO, btc, Side.BUY, Decimal("750760"), Decimal("0.1"), at),
            "Ticker": Ticker(
                GMO, btc, ask=Decimal("750760"), bid=Decimal("750600"), high=Decimal("762302"),
                low=Decimal("704874"), last=Decimal("756662"), volume=Decimal("194785.8484"),
                timestamp=at,
            ),
            "OrderBookSnapshot": OrderBookSnapshot(
                GMO, btc, asks=(BookLevel(Decimal("455659"), Decimal("0.1")),),
                bids=(BookLevel(Decimal("455665"), Decimal("0.1")),), timestamp=at,
            ),
        }  # fmt: skip
        assert len(events) == 3

    def test_batch_size_is_respected(self, harness: Harness) -> None:
        written = harness.write(*(trade(n) for n in range(7)))
        source = harness.source("c1")
        sizes = [len(source.read(3, 50)) for _ in range(4)]
        assert sizes == [3, 3, 1, 0]
        assert sorted(harness.pending(harness.trade_stream)) == sorted(i for _, i in written)

    def test_batches_across_streams_keep_id_order_and_size(self, harness: Harness) -> None:
        events: list[MarketEvent] = []
        for n in range(0, 12, 2):
            events += [trade(n), ticker(n + 1)]
        written = harness.write(*events)
        source = harness.source("c1")
        batches = [source.read(4, 50) for _ in range(4)]
        assert [len(b) for b in batches] == [4, 4, 4, 0]
        harness.assert_delivered_in_order([refs(b) for b in batches], written)

    def test_read_does_not_wait_when_block_is_zero(self, harness: Harness) -> None:
        source = harness.source("c1")
        started = time.monotonic()
        assert source.read(10, 0) == []
        assert time.monotonic() - started < 0.5

    def test_read_waits_for_the_first_new_entry(self, harness: Harness) -> None:
        source = harness.source("c1")
        source.read(1, 0)  # the group exists now; the entry below is new to it
        writer = threading.Timer(0.1, lambda: harness.write(trade(1)))
        started = time.monotonic()
        writer.start()
        try:
            batch = source.read(10, 5000)
        finally:
            writer.join()
        assert [e.event for e in batch] == [trade(1)]
        assert time.monotonic() - started < 4

    def test_read_gives_up_after_block_ms(self, harness: Harness) -> None:
        source = harness.source("c1")
        started = time.monotonic()
        assert source.read(10, 150) == []
        assert 0.1 <= time.monotonic() - started < 2

    def test_entries_written_before_the_group_existed_are_read(self, harness: Harness) -> None:
        before = harness.write(trade(0), trade(1))
        source = harness.source("c1")
        assert refs(source.read(10, 50)) == before
        after = harness.write(trade(2))
        assert refs(source.read(10, 50)) == after

    def test_each_group_gets_every_entry(self, harness: Harness) -> None:
        written = harness.write(trade(0), ticker(1), trade(2))
        strategy = harness.source("c1")
        other = harness.source("c1", group="another-group")
        assert refs(strategy.read(10, 50)) == harness.in_read_order(written)
        assert refs(other.read(10, 50)) == harness.in_read_order(written)

    # ----- acknowledgement and stats --------------------------------------------------------

    def test_ack_removes_entries_from_the_pending_list(self, harness: Harness) -> None:
        written = harness.write(trade(0), ticker(1), trade(2))
        source = harness.source("c1")
        batch = source.read(10, 50)
        source.ack(batch[:2])
        assert set(harness.pending(harness.trade_stream)) | set(
            harness.pending(harness.ticker_stream)
        ) == {written[2][1]}
        source.ack(batch)  # acknowledging again is harmless and not counted twice
        assert harness.pending(harness.trade_stream) == {}
        assert source.stats.delivered == 3
        assert source.stats.acknowledged == 3
        source.ack([])
        assert source.stats.acknowledged == 3

    # ----- malformed entries ----------------------------------------------------------------

    @pytest.mark.parametrize(
        ("stream_kind_", "fields", "kind"),
        [pytest.param(s, f, k, id=case) for case, s, f, k in MALFORMED],
    )
    def test_malformed_entry_is_dead_lettered_acknowledged_and_counted(
        self, harness: Harness, stream_kind_: str, fields: dict[str, Any], kind: str
    ) -> None:
        stream = f"{harness.prefix}md:{stream_kind_}"
        good = {"trade": trade, "orderbook": book, "ticker": ticker}[stream_kind_]
        first = harness.append(stream, entry_fields(good(1)))
        bad = harness.append(stream, fields)
        last = harness.append(stream, entry_fields(good(2)))
        source = harness.source("c1")
        batch = source.read(10, 50)
        assert [e.entry_id for e in batch] == [first, last]
        assert [e.event for e in batch] == [good(1), good(2)]
        assert harness.dead_letters() == [
            {
                "source_stream": stream,
                "source_id": bad,
                "reason": harness.dead_letters()[0]["reason"],
                "fields": harness.dead_letters()[0]["fields"],
            }
        ]
        letter = harness.dead_letters()[0]
        assert letter["reason"].startswith(f"{kind}: ")
        assert json.loads(letter["fields"]) == fields
        assert bad not in harness.pending(stream)
        assert source.stats.dead_lettered == 1
        assert source.stats.dead_letter_reasons == {kind: 1}
        assert source.stats.delivered == 2
        source.ack(batch)
        assert harness.pending(stream) == {}
        restarted = harness.source("c1")
        assert restarted.recover() == []
        assert restarted.read(10, 10) == []

    def test_many_malformed_entries_never_stop_the_source(self, harness: Harness) -> None:
        expected = []
        for n, (_, stream_kind_, fields, _) in enumerate(MALFORMED):
            stream = f"{harness.prefix}md:{stream_kind_}"
            harness.append(stream, fields)
            expected.append(harness.write(trade(n))[0])
        source = harness.source("c1")
        got = drain(source, max_count=5)
        assert refs(got) == expected
        assert source.stats.dead_lettered == len(MALFORMED)
        assert sum(source.stats.dead_letter_reasons.values()) == len(MALFORMED)
        assert source.stats.dead_letter_reasons["invalid-value"] == sum(
            1 for case in MALFORMED if case[3] == "invalid-value"
        )
        assert len(harness.dead_letters()) == len(MALFORMED)

    def test_bytes_that_are_not_utf8_are_dead_lettered(self, harness: Harness) -> None:
        if not harness.reads_non_utf8:
            pytest.skip("a decode_responses=True client raises on such a reply before parsing")
        bad = harness.append(harness.trade_stream, {"exchange": "gmo", "payload": b"\xff\xfe{"})
        good = harness.write(trade(1))
        source = harness.source("c1")
        assert refs(source.read(10, 50)) == good
        (letter,) = harness.dead_letters()
        assert letter["source_id"] == bad
        assert letter["reason"].startswith("bad-encoding: ")
        assert json.loads(letter["fields"]) == {"exchange": "gmo", "payload": "\\xff\\xfe{"}
        assert source.stats.dead_letter_reasons == {"bad-encoding": 1}

    # ----- restarts and crashes -------------------------------------------------------------

    def test_unacknowledged_entries_come_back_after_a_restart(self, harness: Harness) -> None:
        events = [trade(0), ticker(1), trade(2), book(3), trade(4)]
        written = harness.write(*events)
        first = harness.source("c1")
        assert first.recover() == []
        batch = first.read(10, 50)
        first.ack(batch[:2])
        first.close()  # or a crash: nothing more is acknowledged

        restarted = harness.source("c1")
        recovered = restarted.recover()
        assert refs(recovered) == harness.in_read_order(written)[2:]
        assert [e.event for e in recovered] == [e.event for e in batch[2:]]
        assert restarted.stats.reclaimed == 3
        assert restarted.read(10, 10) == []
        restarted.ack(recovered[:1])

        again = harness.source("c1")
        assert refs(again.recover()) == refs(recovered[1:])

    def test_entries_held_back_by_the_batch_size_are_not_lost(self, harness: Harness) -> None:
        written = harness.write(trade(0), ticker(1), trade(2), ticker(3), trade(4), ticker(5))
        first = harness.source("c1")
        got = first.read(2, 50)  # the store delivered more than it handed out
        first.ack(got)
        assert first.stats.delivered == 2
        restarted = harness.source("c1")
        recovered = restarted.recover()
        assert recovered  # the two held back are pending for c1, not lost
        rest = drain(restarted)
        harness.assert_delivered_in_order([refs(recovered), refs(rest)], written, got)

    def test_a_crashed_consumers_entries_are_claimed_after_the_idle_time(
        self, harness: Harness
    ) -> None:
        written = harness.write(trade(0), ticker(1), trade(2))
        crashed = harness.source("worker-1")
        assert len(crashed.read(10, 50)) == 3

        other = harness.source("worker-2")
        assert other.recover() == []  # not idle long enough: worker-1 may still be working
        harness.let_idle_time_pass()
        later = harness.source("worker-2")
        claimed = later.recover()
        assert refs(claimed) == harness.in_read_order(written)
        assert later.stats.reclaimed == 3
        owners = {**harness.pending(harness.trade_stream), **harness.pending(harness.ticker_stream)}
        assert set(owners.values()) == {"worker-2"}

        assert harness.source("worker-1").recover() == []  # they moved; claimed just now
        later.ack(claimed)
        harness.let_idle_time_pass()
        assert harness.source("worker-3").recover() == []

    def test_recover_claims_only_idle_entries(self, harness: Harness) -> None:
        old = harness.write(trade(0))
        harness.source("worker-1").read(10, 50)
        harness.let_idle_time_pass()
        harness.write(trade(1))
        harness.source("worker-1").read(10, 50)  # a fresh delivery, not idle
        assert refs(harness.source("worker-2").recover()) == old

    def test_an_entry_deleted_while_pending_is_dead_lettered_on_recover(
        self, harness: Harness
    ) -> None:
        written = harness.write(trade(0), trade(1), trade(2))
        harness.source("c1").read(10, 50)
        harness.delete(harness.trade_stream, written[1][1])
        restarted = harness.source("c1")
        assert refs(restarted.recover()) == [written[0], written[2]]
        (letter,) = harness.dead_letters()
        assert letter["source_id"] == written[1][1]
        assert letter["reason"].startswith("deleted: ")
        assert written[1][1] not in harness.pending(harness.trade_stream)
        assert restarted.stats.dead_letter_reasons == {"deleted": 1}

    # ----- several consumers ----------------------------------------------------------------

    def test_no_entry_is_delivered_to_two_consumers_of_a_group(self, harness: Harness) -> None:
        written = harness.write(*(trade(n) if n % 3 else ticker(n) for n in range(30)))
        a, b = harness.source("a"), harness.source("b")
        seen: dict[str, list[tuple[str, str]]] = {"a": [], "b": []}
        while True:
            got_a, got_b = a.read(4, 20), b.read(3, 20)
            seen["a"] += refs(got_a)
            seen["b"] += refs(got_b)
            if not got_a and not got_b:
                break
        assert seen["a"]
        assert seen["b"]
        assert not set(seen["a"]) & set(seen["b"])
        assert sorted(seen["a"] + seen["b"]) == sorted(written)

    def test_concurrent_consumers_share_the_entries(self, harness: Harness) -> None:
        written = harness.write(*(trade(n) for n in range(120)))
        results: dict[str, list[tuple[str, str]]] = {}

        def consume(name: str) -> None:
            source = harness.source(name)
            got: list[tuple[str, str]] = []
            idle = 0
            while idle < 3:
                batch = source.read(5, 20)
                got += refs(batch)
                source.ack(batch)
                idle = 0 if batch else idle + 1
            results[name] = got

        threads = [threading.Thread(target=consume, args=(f"c{i}",)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        everything = [ref for got in results.values() for ref in got]
        assert len(everything) == len(set(everything))
        assert sorted(everything) == sorted(written)
        for got in results.values():  # each consumer saw its share in stream order
            assert got == sorted(got, key=lambda ref: id_key(ref[1]))
        assert harness.pending(harness.trade_stream) == {}

    def test_bad_arguments_are_refused(self, harness: Harness) -> None:
        with pytest.raises(ValueError, match="max_count"):
            harness.source("c1").read(0, 0)
        with pytest.raises(TypeError):
            harness.source("c1", streams=harness.trade_stream)  # one string, not a list
        with pytest.raises(ValueError, match="repeat"):
            harness.source("c1", streams=[harness.trade_stream, harness.trade_stream])


class TestInProcessSource(MarketDataSourceContract):
    @pytest.fixture
    def harness(self) -> Harness:
        return InProcessHarness("t-local:")


class TestRedisStreamsSource(MarketDataSourceContract):
    """A bytes client (`decode_responses=False`), as the composition root should use."""

    @pytest.fixture
    def harness(self, redis_url: str, redis_prefix: str) -> Iterator[Harness]:
        harness = RedisHarness(redis_url, redis_prefix, decode_responses=False)
        yield harness
        harness.close()


class TestRedisStreamsSourceDecodedClient(MarketDataSourceContract):
    @pytest.fixture
    def harness(self, redis_url: str, redis_prefix: str) -> Iterator[Harness]:
        harness = RedisHarness(redis_url, redis_prefix, decode_responses=True)
        yield harness
        harness.close()


# ----- the message codec on its own ---------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        trade(0),
        trade(7, price="0.00000001", size="123456789012", side=Side.SELL),
        Trade(GMO, Symbol("ETH"), Side.BUY, Decimal("1E+6"), Decimal("0.10"),
              datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ticker(3),
        book(5),
        OrderBookSnapshot(GMO, BTC, (), (), T0),
    ],
    ids=["trade", "extreme-trade", "microseconds", "ticker", "book", "empty-book"],
)  # fmt: skip
def test_payloads_parse_back_to_the_same_event(event: MarketEvent) -> None:
    fields = entry_fields(event)
    assert parse_entry(stream_of(event), fields) == event
    raw = {k.encode(): v.encode() for k, v in fields.items()}
    assert parse_entry(stream_of(event, "t1234:").encode(), raw) == event


def test_payloads_are_gmo_messages() -> None:
    assert trade_payload(trade(0)) == (
        '{"channel":"trades","price":"15000000","side":"BUY","size":"0.01",'
        '"timestamp":"2026-03-01T09:00:00.000Z","symbol":"BTC_JPY"}'
    )
    big = Trade(GMO, BTC, Side.SELL, Decimal("1E+6"), Decimal("1"), T0)
    assert json.loads(trade_payload(big))["price"] == "1000000"
    assert json.loads(ticker_payload(ticker(0)))["volume"] == "1234.5678"
    assert json.loads(orderbook_payload(book(0)))["asks"][0] == {
        "price": "15000100",
        "size": "0.5",
    }


def test_timestamps_are_utc_with_milliseconds_and_z() -> None:
    jst = datetime(2026, 3, 1, 18, 0, 0, 250000, tzinfo=UTC).astimezone(
        __import__("zoneinfo").ZoneInfo("Asia/Tokyo")
    )
    assert format_timestamp(jst) == "2026-03-01T18:00:00.250Z"
    assert format_timestamp(T0.replace(microsecond=123456)) == "2026-03-01T09:00:00.123456Z"
    event = parse_entry("md:trade", gmo(trade_message(timestamp="2018-03-30T12:34:56Z")))
    assert event.timestamp == datetime(2018, 3, 30, 12, 34, 56, tzinfo=UTC)
    assert event.timestamp.tzinfo is UTC


@pytest.mark.parametrize(
    ("stream", "kind"),
    [
        ("md:trade", "trade"),
        ("md:orderbook", "orderbook"),
        ("md:ticker", "ticker"),
        ("t1234:md:trade", "trade"),
        ("a:b:md:ticker", "ticker"),
    ],
)
def test_stream_names_with_a_prefix_are_accepted(stream: str, kind: str) -> None:
    assert stream_kind(stream) == kind


@pytest.mark.parametrize("stream", ["md:trades", "md:", "trade", "xmd:trade", "md:trade:x"])
def test_unknown_streams_are_refused(stream: str) -> None:
    with pytest.raises(MalformedEntry, match=r"^unknown-stream: "):
        parse_entry(stream, gmo(trade_message()))


def test_domain_refusals_become_malformed_entries_with_the_domain_message() -> None:
    with pytest.raises(MalformedEntry) as refused:
        parse_entry("md:trade", gmo(trade_message(size="-0.1")))
    assert not isinstance(refused.value, InvalidValue)
    assert isinstance(refused.value, ValueError)
    assert refused.value.kind == "invalid-value"
    assert (
        str(InvalidValue("size", Decimal("-0.1"), "must be greater than zero"))
        in refused.value.reason
    )


def test_a_parser_that_fails_unexpectedly_dead_letters_instead_of_stopping() -> None:
    log = InProcessLog()
    transport = InProcessTransport(log, ["t:md:trade"], GROUP, "c1", "t:dead-letter")

    def parse(stream: str, fields: Mapping[Any, Any]) -> MarketEvent:
        if fields.get("payload") == "boom":
            raise RuntimeError("a bug")
        return parse_entry(stream, fields)

    reader: StreamGroupReader[MarketEvent] = StreamGroupReader(transport, parse, MalformedEntry)
    log.append("t:md:trade", gmo("boom"))
    good = log.append("t:md:trade", entry_fields(trade(1)))
    assert [(d.entry_id, d.value) for d in reader.read(10, 0)] == [(good, trade(1))]
    ((_, letter),) = log.entries("t:dead-letter")
    assert letter["reason"] == "parse-error: RuntimeError: a bug"
    assert reader.stats.dead_letter_reasons == {"parse-error": 1}
    assert [p.entry_id for p in log.pending("t:md:trade", GROUP)] == [good]
