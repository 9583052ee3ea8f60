#!/usr/bin/env bash
# Pipeline overhead per canary step, excluding bake time, on the local environment.
# Writes only the "## Delivery pipeline" section of docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin"
if command -v uv >/dev/null 2>&1; then UV=(uv); else UV=(python3 -m uv); fi
exec "${UV[@]}" run --locked python bench/delivery/bench.py "$@"
