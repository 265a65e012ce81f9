#!/usr/bin/env bash
# Regenerates ops/requirements.lock: every runtime dependency of pyproject.toml (and what they
# pull in) pinned with ==, with the sha256 of every published file, so the image installs the
# same bytes on every build (`pip install --require-hashes`). setuptools and wheel are in it
# too: the Dockerfile builds the project with --no-build-isolation, from the lock alone.
# Run it after changing [project.dependencies], or to take newer releases; needs PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools"
"$tools/bin/python" -m pip install --quiet "pip-tools>=7.4"
# Only PyPI: a machine's own pip configuration (local wheel folders, extra indexes) must not
# decide what the image installs, nor end up written into the lock.
# Besides pyproject.toml's dependencies, on stdin ("-"): its build requirements (the image
# builds the project from the lock, without build isolation) and async-timeout, which redis
# needs below Python 3.11.3 (Debian bookworm's python3 is 3.11.2) but pip-compile would lock
# only when resolving on such a Python.
{
  python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")'
  echo "async-timeout>=4.0.3"
} | env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL PIP_CONFIG_FILE=/dev/null \
  CUSTOM_COMPILE_COMMAND="ops/lock.sh" \
  "$tools/bin/pip-compile" --quiet --generate-hashes --strip-extras --allow-unsafe \
  --no-emit-index-url --no-emit-find-links --output-file ops/requirements.lock pyproject.toml -
echo "ops/requirements.lock: $(grep -c '==' ops/requirements.lock) pinned packages"
