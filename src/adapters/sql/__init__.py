"""SQL storage for the read tables (ohlcv, signals, ...) on PostgreSQL and SQLite."""
