"""`python -m trading_engine_standins.gmo`: serve the stand-in until Ctrl-C, for manual
poking and benchmarks."""

from __future__ import annotations

import argparse
import threading

from trading_engine_standins.gmo.market_feed import MarketFeed
from trading_engine_standins.gmo.server import GmoStandIn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="trading_engine_standins.gmo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--api-key", default="standin-key")
    parser.add_argument("--api-secret", default="standin-secret")
    parser.add_argument(
        "--rate-limit", type=int, default=20, help="requests/s per GET and POST budget; 0 = off"
    )
    parser.add_argument(
        "--market-from-redis",
        metavar="REDIS_URL",
        help="play the trades published on --market-stream into the stand-in's book, so "
        "orders fill at the market's prices (default: one fixed price per symbol)",
    )
    parser.add_argument("--market-stream", default="md:trade")
    args = parser.parse_args(argv)
    standin = GmoStandIn(api_key=args.api_key, api_secret=args.api_secret, host=args.host)
    standin.rate_limit_per_second = args.rate_limit or None
    base_url = standin.start(port=args.port)
    feed = None
    if args.market_from_redis:
        feed = MarketFeed(standin.exchange, args.market_from_redis, args.market_stream).start()
    print(base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        if feed is not None:
            feed.stop()
        standin.stop()


if __name__ == "__main__":
    main()
