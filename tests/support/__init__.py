"""Test support: stand-in exchanges and the harnesses the broker contract suite drives."""
