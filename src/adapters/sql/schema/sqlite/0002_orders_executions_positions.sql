-- SQLite twin of postgres/0002 (see there for why each added column exists). DECIMAL values
-- are TEXT so they stay exact; UUIDs are TEXT.
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    exchange VARCHAR(50) NOT NULL,
    symbol VARCHAR(20) NOT NULL,
    order_id VARCHAR(100) NOT NULL UNIQUE,
    signal_id INTEGER REFERENCES signals(id),
    side VARCHAR(10) NOT NULL,
    order_type VARCHAR(20) NOT NULL,
    price TEXT,
    size TEXT NOT NULL,
    status VARCHAR(20) NOT NULL,
    filled_size TEXT DEFAULT '0',
    average_price TEXT,
    timestamp TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    engine_order_id TEXT NOT NULL UNIQUE,
    signal_key VARCHAR(100) NOT NULL,
    time_in_force VARCHAR(10) NOT NULL,
    settle VARCHAR(10) NOT NULL,
    cancel_type VARCHAR(30),
    reject_code VARCHAR(50),
    reject_message TEXT,
    last_position INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_orders_exchange_symbol ON orders (exchange, symbol, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_orders_status ON orders (status, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_orders_signal_id ON orders (signal_id);
CREATE INDEX IF NOT EXISTS idx_orders_signal_key ON orders (signal_key);

CREATE TABLE IF NOT EXISTS executions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    exchange VARCHAR(50) NOT NULL,
    symbol VARCHAR(20) NOT NULL,
    order_id INTEGER REFERENCES orders(id),
    execution_id VARCHAR(100) NOT NULL UNIQUE,
    side VARCHAR(10) NOT NULL,
    price TEXT NOT NULL,
    size TEXT NOT NULL,
    fee TEXT DEFAULT '0',
    timestamp TIMESTAMP NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    engine_order_id TEXT NOT NULL,
    source VARCHAR(20) NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_executions_exchange_symbol
    ON executions (exchange, symbol, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_executions_order_id ON executions (order_id);
CREATE INDEX IF NOT EXISTS idx_executions_timestamp ON executions (timestamp DESC);

CREATE TABLE IF NOT EXISTS positions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    exchange VARCHAR(50) NOT NULL,
    symbol VARCHAR(20) NOT NULL,
    side VARCHAR(10) NOT NULL,
    size TEXT NOT NULL,
    average_price TEXT NOT NULL,
    unrealized_pnl TEXT DEFAULT '0',
    realized_pnl TEXT DEFAULT '0',
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    fees_paid TEXT NOT NULL DEFAULT '0',
    fill_count INTEGER NOT NULL DEFAULT 0,
    closed_trips INTEGER NOT NULL DEFAULT 0,
    last_position INTEGER NOT NULL,
    UNIQUE (exchange, symbol)
);
CREATE INDEX IF NOT EXISTS idx_positions_exchange_symbol ON positions (exchange, symbol);
