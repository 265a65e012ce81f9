#!/usr/bin/env bash
# The main job on the embedded default: no servers needed (SQLite file under ./data).
#   1. the Strategy module over the bundled GMO trades sample (in-process stream → bars →
#      indicators → strategy → signals stored in SQLite and put on the in-process signal stream);
#   2. a scripted order lifecycle on the event-sourced core, printed as an audit trail.
# Usage: ops/main.sh                      (both)
#        ops/main.sh SUBCOMMAND [ARGS...]  (any trading-engine subcommand instead)
set -euo pipefail
cd "$(dirname "$0")/.."
ops/bootstrap.sh
if [ "$#" -gt 0 ]; then exec .venv/bin/trading-engine "$@"; fi
.venv/bin/trading-engine simulate
.venv/bin/trading-engine demo
