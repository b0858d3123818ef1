#!/usr/bin/env bash
# Run the test suite and the linter in the environment scripts/setup.sh made.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m ruff check .
.venv/bin/python -m pytest "$@"
