#!/usr/bin/env bash
# Image-service benchmark: raw pyvips vs this service (cold and stored renditions) vs thumbor 7.8
# vs a minimal Starlette static endpoint, side by side. Writes the "## Image service" section of
# docs/benchmarks.md. Thumbor goes into a throwaway venv under .state/bench/ (created if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin"
exec uv run --locked python bench/service/bench.py "$@"
