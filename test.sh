#!/usr/bin/env bash
# The test suite: lint, layer contracts, and pytest (in parallel on every core).
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/pytest ] || { python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'; }
.venv/bin/ruff check src tests benchmarks
.venv/bin/lint-imports
.venv/bin/pytest -n auto "$@"
