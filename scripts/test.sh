#!/usr/bin/env bash
# Set everything up on a fresh machine and run the test suite (CI runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
# The Graphviz binary lets the tests render graphs; everything else works without it.
if ! command -v dot >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq graphviz >/dev/null) || echo "note: graphviz not installed; rendering tests will skip"
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev,demo,cuda]"   # cuda: numba-cuda, for the CUDA simulator tests
export GRAPHNET_CACHE_DIR="${GRAPHNET_CACHE_DIR:-$PWD/.graphnet_cache}"
exec .venv/bin/python -m pytest "$@"
