"""trading-engine: an event-sourced trading core for crypto exchanges (GMO Coin first).

Layers, each a subpackage: `domain` (the business, no I/O), `ports` (the Protocols the
application needs), `adapters` (one module per technology behind a port) and `app` (the
loops, the CLI and the composition root, the only place that knows every concrete class).
"""
