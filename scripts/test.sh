#!/usr/bin/env bash
# The whole test suite: lint, format, types, then pytest (warnings are errors, random order,
# coverage printed).
set -euo pipefail
cd "$(dirname "$0")/.."
# Let Python cache bytecode: some machines set PYTHONDONTWRITEBYTECODE, and then every
# process recompiles the Pulumi SDKs (25 s instead of 4 s per program evaluation).
unset PYTHONDONTWRITEBYTECODE
export PATH="$PATH:/usr/sbin"  # haproxy lives in /usr/sbin on Debian
if command -v uv >/dev/null 2>&1; then UV=(uv); else UV=(python3 -m uv); fi
run() { printf '[test] %s\n' "$*"; "$@"; }

run "${UV[@]}" run --locked ruff check .
run "${UV[@]}" run --locked ruff format --check .
run scripts/typecheck.sh
set +e
# Random order (pytest-randomly prints "Using --randomly-seed=N"; rerun a failure with that
# flag) and coverage of the three packages, printed as a table with the total.
run "${UV[@]}" run --locked pytest \
  --cov=image_contracts --cov=image_service --cov=delivery --cov=infra --cov-report=term:skip-covered "$@"
status=$?
set -e
if [[ $status == 5 ]]; then
  echo "[test] pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit $status
