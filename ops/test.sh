#!/usr/bin/env bash
# Installs what the tests need, makes sure PostgreSQL and Redis are up, then runs
# ruff, the import-linter layer contracts and the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
ops/bootstrap.sh test
# The report test opens report.html in Debian's chromium (playwright drives it; it never
# downloads a browser of its own). Without chromium that test is skipped, so install it here.
if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null; then
    echo "== installing chromium (apt-get), for tests/integration/test_report_browser.py"
    sudo=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo="sudo"
    if ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
      echo "!! apt-get could not install chromium: the report's browser test is skipped" >&2
    fi
  else
    echo "!! no apt-get here: install chromium at /usr/bin/chromium, or the report's browser" \
      "test is skipped" >&2
  fi
fi
ops/services.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff" && ruff check src tests bench standins && ruff format --check src tests bench standins
echo "== import-linter" && lint-imports
echo "== pytest" && HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}" pytest -n "${TEST_WORKERS:-4}" --dist loadgroup --no-loadscope-reorder "$@"
