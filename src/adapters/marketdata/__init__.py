"""Market data in: GMO messages on Redis streams (or an in-process log) as domain events.

`gmo_messages` validates an entry into a Trade / OrderBookSnapshot / Ticker (and encodes one
back for replays); `redis_streams` and `in_process` are the two `MarketDataSource`s, with the
same consumer-group semantics: parse, dead-letter the malformed, acknowledge, recover.
"""
