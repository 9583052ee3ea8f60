#!/usr/bin/env bash
# Benchmark: the prod Pulumi program under mocks (target <= 5 s). Rewrites only the
# "## Platform" section of docs/benchmarks.md.
# This machine exports PYTHONDONTWRITEBYTECODE=1, so every process recompiles the provider SDKs
# from source; a developer's or CI's `pulumi up` reuses bytecode. Measure that steady state with
# a bytecode cache outside the venv (.state/pycache), warmed by one run first.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPYCACHEPREFIX="$PWD/.state/pycache"
unset PYTHONDONTWRITEBYTECODE
uv run --locked python -W ignore::DeprecationWarning bench/platform/measure.py --runs 1 >/dev/null
exec uv run --locked python -W ignore::DeprecationWarning bench/platform/measure.py --write "$@"
