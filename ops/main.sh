#!/usr/bin/env bash
# The main job on the embedded default: no servers needed (SQLite file under ./data).
# Usage: ops/main.sh [trading-engine arguments...]   (default: demo)
set -euo pipefail
cd "$(dirname "$0")/.."
ops/bootstrap.sh
if [ "$#" -eq 0 ]; then set -- demo; fi
exec .venv/bin/trading-engine "$@"
