#!/usr/bin/env bash
# The README's first command. Until the pipeline lands it runs the image service alone.
set -euo pipefail
cd "$(dirname "$0")/.."
exec uv run --locked image-service
