#!/usr/bin/env bash
# Benchmark: the prod Pulumi program under mocks (target <= 5 s). Rewrites only the
# "## Platform" section of docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec uv run --locked python -W ignore::DeprecationWarning bench/platform/measure.py --write "$@"
