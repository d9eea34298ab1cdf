#!/usr/bin/env bash
# Install everything the tests need (venv in .venv) and run them.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -r requirements-dev.txt
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || echo "chromium not installed: the browser tests will fail; install chromium, or set SPECSCOPE_SKIP_BROWSER=1 to skip them" >&2
fi
.venv/bin/ruff check . && .venv/bin/ruff format --check . >/dev/null || { echo "lint: run .venv/bin/ruff check --fix . && .venv/bin/ruff format ." >&2; exit 1; }
# one worker per core, each test file on one worker (its module fixtures, e.g. an app server, once);
# SPECSCOPE_TEST_WORKERS=0 runs serially
exec .venv/bin/python -m pytest -n "${SPECSCOPE_TEST_WORKERS:-auto}" --dist loadfile "$@"
