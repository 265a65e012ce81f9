"""Reporting: compliance and tax exports from the event log."""
