-- The seed's orders, executions and positions tables, column for column: read models that
-- projections derive from the event log (src/app/projections.py), rebuildable at any time.
-- Additions, each for idempotency or for what a reader needs that the seed left implicit:
--   * ids are not drawn from the sequences: a row's id is the log position of the event that
--     created it, so a rebuild (or a crash and resume) gives every row the same id again;
--   * orders.order_id holds the exchange's order id once known, and the engine's order id
--     (engine_order_id, the client order id sent) until then, since the seed's column is
--     NOT NULL and an order exists before the exchange answers (or if it never does);
--   * orders.signal_key is the stable signal id (signals.signal_id); signal_id is the seed's
--     integer reference, filled when the signals table holds that signal;
--   * last_position: the log position of the last event reflected in the row.
CREATE TABLE IF NOT EXISTS orders (
    id SERIAL PRIMARY KEY,
    exchange VARCHAR(50) NOT NULL,
    symbol VARCHAR(20) NOT NULL,
    order_id VARCHAR(100) NOT NULL UNIQUE,
    signal_id INTEGER REFERENCES signals(id),
    side VARCHAR(10) NOT NULL,
    order_type VARCHAR(20) NOT NULL,
    price DECIMAL(20, 8),
    size DECIMAL(20, 8) NOT NULL,
    status VARCHAR(20) NOT NULL,
    filled_size DECIMAL(20, 8) DEFAULT 0,
    average_price DECIMAL(20, 8),
    timestamp TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    engine_order_id UUID NOT NULL UNIQUE,
    signal_key VARCHAR(100) NOT NULL,
    time_in_force VARCHAR(10) NOT NULL,
    settle VARCHAR(10) NOT NULL,
    cancel_type VARCHAR(30),
    reject_code VARCHAR(50),
    reject_message TEXT,
    last_position BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_orders_exchange_symbol ON orders (exchange, symbol, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_orders_status ON orders (status, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_orders_signal_id ON orders (signal_id);
CREATE INDEX IF NOT EXISTS idx_orders_signal_key ON orders (signal_key);

CREATE TABLE IF NOT EXISTS executions (
    id SERIAL PRIMARY KEY,
    exchange VARCHAR(50) NOT NULL,
    symbol VARCHAR(20) NOT NULL,
    order_id INTEGER REFERENCES orders(id),
    execution_id VARCHAR(100) NOT NULL UNIQUE,
    side VARCHAR(10) NOT NULL,
    price DECIMAL(20, 8) NOT NULL,
    size DECIMAL(20, 8) NOT NULL,
    fee DECIMAL(20, 8) DEFAULT 0,
    timestamp TIMESTAMP NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    engine_order_id UUID NOT NULL,
    source VARCHAR(20) NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_executions_exchange_symbol
    ON executions (exchange, symbol, timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_executions_order_id ON executions (order_id);
CREATE INDEX IF NOT EXISTS idx_executions_timestamp ON executions (timestamp DESC);

-- A flat position keeps its row (side FLAT, size 0, average_price 0): its realized PnL stays.
-- unrealized_pnl needs a mark price, which the log does not hold: readers compute it from
-- size, average_price and a price of their own; the projection writes 0.
CREATE TABLE IF NOT EXISTS positions (
    id SERIAL PRIMARY KEY,
    exchange VARCHAR(50) NOT NULL,
    symbol VARCHAR(20) NOT NULL,
    side VARCHAR(10) NOT NULL,
    size DECIMAL(20, 8) NOT NULL,
    average_price DECIMAL(20, 8) NOT NULL,
    unrealized_pnl DECIMAL(20, 8) DEFAULT 0,
    realized_pnl DECIMAL(20, 8) DEFAULT 0,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    fees_paid DECIMAL(20, 8) NOT NULL DEFAULT 0,
    fill_count INTEGER NOT NULL DEFAULT 0,
    closed_trips INTEGER NOT NULL DEFAULT 0,
    last_position BIGINT NOT NULL,
    UNIQUE (exchange, symbol)
);
CREATE INDEX IF NOT EXISTS idx_positions_exchange_symbol ON positions (exchange, symbol);
