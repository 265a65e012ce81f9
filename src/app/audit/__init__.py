"""Audit: an order's or a signal's whole trail from the event log, and how it is shown."""
