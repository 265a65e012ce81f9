"""The `trading-engine` command's entry point.

Importing the engine takes a couple of seconds (pandas, ccxt, eventsourcing...). For `run`,
a SIGTERM in that time (a container stopped as it starts) would kill the process before its
handler exists; the handler is installed here first, and `run` sees the request and stops
cleanly, with exit code 0, before it consumes anything. Other commands keep the default
(SIGTERM ends them at once), so nothing here delays them.
"""

from __future__ import annotations

import sys

from trading_engine.app.runtime.service import listen_for_stop_early


def main() -> None:
    if sys.argv[1:2] == ["run"]:
        listen_for_stop_early()
    from trading_engine.app.cli.commands import main as cli_main  # after the handler, on purpose

    cli_main()
