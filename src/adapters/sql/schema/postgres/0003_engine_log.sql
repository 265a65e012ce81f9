-- The seed's DBLogger table: signals, orders, fills, rejections and errors as structured
-- records, each with the correlation id that ties a market entry to its signal, orders and
-- fills (the signal id). Append-only, like the event log; read with plain SQL.
CREATE TABLE IF NOT EXISTS engine_log (
    id BIGSERIAL PRIMARY KEY,
    logged_at TIMESTAMPTZ NOT NULL,
    level VARCHAR(10) NOT NULL,
    logger VARCHAR(100) NOT NULL,
    event VARCHAR(30) NOT NULL,
    correlation_id VARCHAR(200),
    message TEXT NOT NULL,
    fields JSONB NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS idx_engine_log_correlation ON engine_log (correlation_id);
CREATE INDEX IF NOT EXISTS idx_engine_log_event_time ON engine_log (event, logged_at DESC);
