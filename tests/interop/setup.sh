#!/usr/bin/env bash
# Installs what the interop tests need, from files committed here:
#   node_modules/  npm ci from package-lock.json (pusher-js, the Node SDK, laravel-echo)
#   .venv/         a Python virtual environment with the official Python SDK,
#                  every version pinned in python/requirements.txt
# Usage: tests/interop/setup.sh [node|python|all] [--if-missing]
#   --if-missing: leave node_modules alone if it exists, and .venv if it was
#   made from the current python/requirements.txt.
# .ci/run calls it with `all`; run.sh with --if-missing before the tests.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

what="${1:-all}"
if_missing=false
[ "${2:-}" = "--if-missing" ] && if_missing=true

# The copy of python/requirements.txt that .venv was made from.
stamp=.venv/installed-requirements.txt

node_deps() {
    if $if_missing && [ -d node_modules ]; then return 0; fi
    command -v npm >/dev/null 2>&1 || { echo "setup: npm is not installed" >&2; return 1; }
    echo "setup: npm ci in tests/interop"
    npm ci --no-audit --no-fund </dev/null
}

python_venv() {
    if $if_missing && [ -x .venv/bin/python ] && cmp -s python/requirements.txt "$stamp"; then
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || { echo "setup: python3 is not installed" >&2; return 1; }
    echo "setup: Python SDK into tests/interop/.venv (python/requirements.txt)"
    rm -rf .venv
    # the stamp is written last: a .venv without it is incomplete, and removed
    if python3 -m venv .venv &&
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-input \
            -r python/requirements.txt </dev/null &&
        .venv/bin/python -m pip check --disable-pip-version-check; then
        cp python/requirements.txt "$stamp"
    else
        rm -rf .venv
        return 1
    fi
}

case "$what" in
    node) node_deps ;;
    python) python_venv ;;
    all) node_deps && python_venv ;;
    *) echo "usage: $0 [node|python|all] [--if-missing]" >&2; exit 2 ;;
esac
