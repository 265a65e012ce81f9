#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project into it, with extras given as "$1"
# (e.g. "test"). Re-running is cheap: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
extras="${1:-}"
target="."
[ -n "$extras" ] && target=".[${extras}]"
stamp=".venv/.installed-$(cat pyproject.toml standins/pyproject.toml | sha1sum | cut -c1-12)-${extras:-base}"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install --quiet -e "$target" 2>&1 | grep -v "^WARNING: Location" || true
  if [[ ",$extras," == *",test,"* ]]; then
    # The stand-in exchanges the tests run against: their own distribution, not the engine's.
    .venv/bin/python -m pip install --quiet -e ./standins 2>&1 | grep -v "^WARNING: Location" || true
  fi
  .venv/bin/python -c "import eventsourcing, psycopg, orjson, typer" # fail loudly if install failed
  touch "$stamp"
fi
