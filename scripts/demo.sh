#!/usr/bin/env bash
# Set everything up on a fresh machine and run the main job: train on the embedded digits.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[demo]"
exec .venv/bin/python -m graphnet demo "$@"
