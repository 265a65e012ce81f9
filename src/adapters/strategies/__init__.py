"""Strategies: one module each, plus one entry in `registry.py`."""
