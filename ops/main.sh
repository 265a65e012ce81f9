#!/usr/bin/env bash
# The main job on the embedded default: no servers needed (SQLite file under ./data).
# A backtest over a year of generated hourly bars: the live strategy and execution loops with
# the simulated exchange; prints the metrics, where the report is, and the commands that
# audit and export the run.
# Usage: ops/main.sh                      (the backtest)
#        ops/main.sh SUBCOMMAND [ARGS...]  (any trading-engine subcommand instead)
set -euo pipefail
cd "$(dirname "$0")/.."
ops/bootstrap.sh
if [ "$#" -gt 0 ]; then exec .venv/bin/trading-engine "$@"; fi
out="data/backtest-$(date -u +%Y%m%dT%H%M%SZ)"
.venv/bin/trading-engine backtest \
  --synthetic 8760 --timeframe 1h --seed 1 --cash 1000000 --commission 0.001 \
  --param fast_window=10 --param slow_window=20 --out "$out"
