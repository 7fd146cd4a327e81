#!/usr/bin/env bash
# The test suite: lint, layer contracts, and pytest (in parallel on every core).
set -euo pipefail
cd "$(dirname "$0")"
# (re)install when the venv is missing or pyproject.toml changed since it was installed
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q -e '.[test]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi
.venv/bin/ruff check src tests benchmarks
.venv/bin/lint-imports
.venv/bin/pytest -n auto "$@"
