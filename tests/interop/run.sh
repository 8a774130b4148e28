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

if [ ! -d tests/interop/node_modules ]; then
    if ! command -v npm >/dev/null 2>&1; then
        skip_or_fail "npm is not installed and tests/interop/node_modules is missing"
    fi
    echo "interop: installing test dependencies (npm ci in tests/interop)"
    if ! (cd tests/interop && npm ci --no-audit --no-fund); then
        skip_or_fail "npm ci in tests/interop failed (no network or registry?)"
    fi
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
