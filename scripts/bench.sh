#!/usr/bin/env bash
# Runs every benchmark the project has; each writes its own section of docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin"
for b in bench/*/run.sh; do
  [[ -x $b ]] || continue
  printf '[bench] %s\n' "$b"
  "$b"
done
