"""The composition root: the only place that knows every concrete class (adapters included)
and wires them into the loops; a sweep wires one backtest per point."""
