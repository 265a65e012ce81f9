"""The composition root: the only place that knows every concrete class (adapters included)
and wires them into the loops; a sweep wires one backtest per point.

The exchange clients, Redis, what only PostgreSQL uses, the health endpoint and the bar file
reader (pandas) are imported by the functions that use them: a command loads what it uses,
and `backtest`, `export` or `audit` no exchange client and no Redis (issue 16;
tests/unit/test_cli_imports.py)."""
