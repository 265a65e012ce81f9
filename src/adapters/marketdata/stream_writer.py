"""Replay trades into the `md:*` streams, as the collector would have written them.

Each trade becomes one entry `{"exchange": "gmo", "payload": <GMO trades message>}` (the
encoding is `gmo_messages.trade_payload`, the inverse of what the consumers parse), added with
`XADD *`: Redis assigns the ids, exactly as for live data, so a replay can follow or precede a
live session on the same stream.

Pacing: `speed=0` sends as fast as Redis takes it, in pipelined batches. `speed=N` keeps the
gaps between trade timestamps, N times shorter (1 = real time). Each trade is due at
`start + (its time - first trade's time) / N` on the monotonic clock, so sleeps never
accumulate drift; trades already due are still sent in one pipeline. Nothing is trimmed
unless `maxlen` is given: a replay never drops data a consumer has not read yet.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from datetime import datetime

import redis

from trading_engine.adapters.marketdata.gmo_messages import trade_payload
from trading_engine.domain.market import Trade


def trade_fields(trade: Trade) -> dict[str, str]:
    """The fields of the `md:trade` entry that carries `trade`."""
    return {"exchange": str(trade.exchange), "payload": trade_payload(trade)}


def publish_trades(
    client: redis.Redis,
    trades: Iterable[Trade],
    stream: str = "md:trade",
    speed: float = 0.0,
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    maxlen: int | None = None,
) -> int:
    """XADD every trade to `stream`; returns how many were written.

    `progress(written)` is called after each pipeline is sent. `maxlen` trims the stream
    approximately (`MAXLEN ~`) to about that many entries; `None` (the default) never trims.
    `sleep` and `clock` are injectable so pacing can be tested without waiting.
    """
    if math.isnan(speed) or speed < 0:
        raise ValueError(f"speed must be 0 (as fast as possible) or positive, got {speed}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if maxlen is not None and maxlen < 1:
        raise ValueError(f"maxlen must be at least 1 (or None: no trimming), got {maxlen}")
    paced = 0 < speed < math.inf
    pipe = client.pipeline(transaction=False)
    pending = written = 0
    first_time: datetime | None = None
    started = 0.0

    def flush() -> None:
        nonlocal pending, written
        if pending:
            pipe.execute()
            written += pending
            pending = 0
            if progress is not None:
                progress(written)

    for trade in trades:
        if paced:
            if first_time is None:
                first_time, started = trade.timestamp, clock()
            due = started + (trade.timestamp - first_time).total_seconds() / speed
            if due > clock():
                flush()  # what is due now goes out before we wait
                wait = due - clock()
                if wait > 0:
                    sleep(wait)
        pipe.xadd(stream, trade_fields(trade), maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
        pending += 1
        if pending >= batch:
            flush()
    flush()
    return written
