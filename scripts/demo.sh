#!/usr/bin/env bash
# Set everything up on a fresh machine and run the main job: train on the embedded digits.
# Each step says what it does first; pip shows each package it fetches (about a minute on a
# fresh machine, seconds once .venv exists).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '==> %s\n' "$*"; }

step "creating the virtual environment .venv (python3 -m venv .venv)"
python3 -m venv .venv
step "upgrading pip inside it"
.venv/bin/python -m pip install -q --upgrade pip
step "installing graphnet (editable) with numpy, numba, scipy, networkx and the demo extra (matplotlib, tqdm)"
# PYTHONWARNINGS=ignore: setuptools' multi-line "Editable installation" banner says nothing to act on.
PYTHONWARNINGS=ignore .venv/bin/python -m pip install --progress-bar off -e ".[demo]"
step "running the main job: python -m graphnet demo $*"
exec .venv/bin/python -m graphnet demo "$@"
