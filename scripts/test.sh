#!/usr/bin/env bash
# Set everything up on a fresh machine and run the test suite (CI runs exactly this).
# Each step says what it does first; pip shows each package it fetches (about 100 lines,
# a minute or two on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '==> %s\n' "$*"; }

# The Graphviz binary lets the tests render graphs; everything else works without it.
if ! command -v dot >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    step "installing Graphviz (apt-get install graphviz) so that the rendering tests run"
    (apt-get update -qq && apt-get install -y -qq graphviz >/dev/null) || echo "note: graphviz not installed; rendering tests will skip"
fi
step "creating the virtual environment .venv (python3 -m venv .venv)"
python3 -m venv .venv
step "upgrading pip inside it"
.venv/bin/python -m pip install -q --upgrade pip
step "installing graphnet (editable) with the dev, demo and cuda extras (cuda: numba-cuda, for the CUDA simulator tests)"
# PYTHONWARNINGS=ignore: setuptools' multi-line "Editable installation" banner says nothing to act on.
PYTHONWARNINGS=ignore .venv/bin/python -m pip install --progress-bar off -e ".[dev,demo,cuda]"
export GRAPHNET_CACHE_DIR="${GRAPHNET_CACHE_DIR:-$PWD/.graphnet_cache}"
step "running the test suite: python -m pytest $* (kernel cache: $GRAPHNET_CACHE_DIR)"
exec .venv/bin/python -m pytest "$@"
