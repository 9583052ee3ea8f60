#!/usr/bin/env bash
# mypy strict over the packages, then over each test and bench folder on its own: those folders
# import their helpers by bare name (pytest puts the folder on sys.path) and each has its own
# conftest.py, so one mypy run over all of them would see duplicate modules.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v uv >/dev/null 2>&1; then UV=(uv); else UV=(python3 -m uv); fi
mypy() { "${UV[@]}" run --locked mypy "$@"; }

mypy
for dir in tests/*/ bench/*/; do
  dir=${dir%/}
  compgen -G "$dir/*.py" >/dev/null || continue
  # A bench folder may reuse its test folder's helpers (bench/reliability uses tests/reliability).
  MYPYPATH="$dir:tests/$(basename "$dir")" mypy --no-error-summary "$dir" || { echo "[typecheck] $dir failed" >&2; exit 1; }
done
echo "[typecheck] packages, tests and bench: clean"
