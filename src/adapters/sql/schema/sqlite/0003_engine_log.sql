-- SQLite twin of postgres/0003: the DBLogger table (JSONB becomes TEXT holding JSON).
CREATE TABLE IF NOT EXISTS engine_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    logged_at TIMESTAMP NOT NULL,
    level VARCHAR(10) NOT NULL,
    logger VARCHAR(100) NOT NULL,
    event VARCHAR(30) NOT NULL,
    correlation_id VARCHAR(200),
    message TEXT NOT NULL,
    fields TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS idx_engine_log_correlation ON engine_log (correlation_id);
CREATE INDEX IF NOT EXISTS idx_engine_log_event_time ON engine_log (event, logged_at DESC);
