"""Where log records go: JSON lines on stdout, the `engine_log` table, secrets redacted."""
