-- The seed's ohlcv and signals tables, column for column, plus what idempotency needs:
-- a unique bar key (replays upsert) and a stable signal id (a decision is stored once).
CREATE TABLE IF NOT EXISTS ohlcv (
    id SERIAL PRIMARY KEY,
    exchange VARCHAR(50) NOT NULL,
    symbol VARCHAR(20) NOT NULL,
    timeframe VARCHAR(10) NOT NULL,
    timestamp TIMESTAMP NOT NULL,
    open DECIMAL(20, 8) NOT NULL,
    high DECIMAL(20, 8) NOT NULL,
    low DECIMAL(20, 8) NOT NULL,
    close DECIMAL(20, 8) NOT NULL,
    volume DECIMAL(20, 8) NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT ohlcv_bar_key UNIQUE (exchange, symbol, timeframe, timestamp)
);
CREATE INDEX IF NOT EXISTS idx_ohlcv_exchange_symbol_timeframe
    ON ohlcv (exchange, symbol, timeframe, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_ohlcv_timestamp ON ohlcv (timestamp DESC);

CREATE TABLE IF NOT EXISTS signals (
    id SERIAL PRIMARY KEY,
    exchange VARCHAR(50) NOT NULL,
    symbol VARCHAR(20) NOT NULL,
    strategy VARCHAR(100) NOT NULL,
    action VARCHAR(20) NOT NULL,
    confidence DECIMAL(5, 2) NOT NULL,
    price_ref DECIMAL(20, 8) NOT NULL,
    indicators JSONB,
    meta JSONB,
    timestamp TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    signal_id VARCHAR(100) NOT NULL,
    CONSTRAINT signals_signal_id_key UNIQUE (signal_id)
);
CREATE INDEX IF NOT EXISTS idx_signals_exchange_symbol_strategy
    ON signals (exchange, symbol, strategy, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_signals_timestamp ON signals (timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_signals_action ON signals (action, timestamp DESC);
