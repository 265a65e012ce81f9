"""Backtests: the live loops driven by bar or trade files with the simulated exchange, and
their results, metrics and report."""
