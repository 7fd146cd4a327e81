#!/usr/bin/env bash
# The main job: the paper's section 5, reproduced on the quick precision, into results/.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/apkern ] || { python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]'; }
.venv/bin/apkern reproduce --quick --out results "$@"
