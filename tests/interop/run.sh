#!/usr/bin/env bash
# Runs the interop tests (real Pusher clients/SDKs against the revurb binary).
# Usage (from anywhere): tests/interop/run.sh
# Env: REVURB_BIN (default target/debug/revurb, built by `make`), CI.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

in_ci() { [ "${CI:-}" = "true" ]; }

skip_or_fail() {
    if in_ci; then
        echo "interop: FAIL: $1" >&2
        exit 1
    fi
    echo "interop: SKIP: $1" >&2
    exit 0
}

if ! command -v node >/dev/null 2>&1; then
    skip_or_fail "node is not installed (the interop tests need Node.js >= 20)"
fi

if ! tests/interop/setup.sh node --if-missing; then
    skip_or_fail "could not install tests/interop/node_modules (npm missing, or npm ci failed: no network or registry?)"
fi

# The Python SDK's venv. Without it python.test.mjs skips (outside CI) or
# fails (CI=true), saying why; the other tests still run.
if ! tests/interop/setup.sh python --if-missing; then
    if in_ci; then
        echo "interop: FAIL: could not make tests/interop/.venv (python3 -m venv, pip install -r tests/interop/python/requirements.txt)" >&2
        exit 1
    fi
    echo "interop: the Python SDK tests will SKIP: could not make tests/interop/.venv (python3 with venv and pip, and network, are needed)" >&2
fi

export REVURB_BIN="${REVURB_BIN:-$root/target/debug/revurb}"
if [ ! -x "$REVURB_BIN" ]; then
    echo "interop: FAIL: no executable revurb binary at $REVURB_BIN (run cargo build first)" >&2
    exit 1
fi

shopt -s nullglob
files=(tests/interop/*.test.mjs)
if [ "${#files[@]}" -eq 0 ]; then
    echo "interop: FAIL: no tests/interop/*.test.mjs files found" >&2
    exit 1
fi

exec node --test --test-concurrency=1 "${files[@]}"
