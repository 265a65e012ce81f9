#!/usr/bin/env bash
# Installs what the tests need, makes sure PostgreSQL and Redis are up, then runs
# ruff, the import-linter layer contracts and the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
ops/bootstrap.sh test
ops/services.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff" && ruff check src tests bench && ruff format --check src tests bench
echo "== import-linter" && lint-imports
echo "== pytest" && pytest "$@"
