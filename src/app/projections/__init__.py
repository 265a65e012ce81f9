"""Projections: the read tables filled from the event log, followed live or rebuilt."""
