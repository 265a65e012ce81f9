"""Stand-in exchanges: `gmo` (GMO Coin's REST protocol, `python -m trading_engine_standins.gmo`)
and `ccxt` (a Binance spot stand-in that ccxt's binance client talks to)."""
