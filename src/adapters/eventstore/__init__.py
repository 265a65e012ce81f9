"""Event store adapters: the eventsourcing library over in-memory, SQLite or PostgreSQL."""
