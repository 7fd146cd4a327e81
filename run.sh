#!/usr/bin/env bash
# The main job: a demonstration run on the bootstrap kernel and its gettid latency.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/apkern ] || { python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'; }
.venv/bin/apkern run pipeline --kernel up
.venv/bin/apkern bench latency --kernel up --iterations 1000
