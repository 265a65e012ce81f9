"""Broker adapters: exchange accounts behind the `ports.broker.Broker` protocol."""
