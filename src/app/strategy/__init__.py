"""The Strategy module: market data to bars, indicators, the strategy's decisions and signals."""
