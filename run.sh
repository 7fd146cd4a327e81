#!/usr/bin/env bash
# The main job: the paper's section 5, reproduced on the quick precision, into results/.
set -euo pipefail
cd "$(dirname "$0")"
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -e "$stamp" ]; then  # a new venv, or pyproject.toml changed since it was installed
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q -e '.[test]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi
.venv/bin/apkern reproduce --quick --out results "$@"
