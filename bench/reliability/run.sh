#!/usr/bin/env bash
# The long versions of the reliability promises (tests/reliability/ holds the fast CI versions).
# Same test code, bigger numbers:
#   fuzz       >= 100,000 mutated images through upload + transform (RELIABILITY_FUZZ_EXAMPLES,
#              bounded by RELIABILITY_FUZZ_SECONDS; fuzz_long.py, the count run is reported)
#   overload   60 s of wrk at twice the saturating concurrency (RELIABILITY_OVERLOAD_SECONDS)
#   restarts   20 rolling restarts behind HAProxy (RELIABILITY_RESTARTS)
#   durability 500 uploads with 5 kill -9 on local storage and on S3/moto (RELIABILITY_SCALE=5)
#   bombs      the bomb corpus, then the <100 ms / <50 MB targets are checked on its figures
#   atheris    coverage-guided fuzzing of probe, then probe+render, 300 s each (atheris_probe.py)
# Usage: bench/reliability/run.sh [fuzz|atheris|overload|restarts|durability|bombs|isolation]...
# (default: all of them)
# Figures: one JSON line per measurement in bench/reliability/results/figures.jsonl, summarised
# into bench/reliability/results/summary.md by report.py (which fails on a missed target).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin"
out=bench/reliability/results
mkdir -p "$out"
export RELIABILITY_FIGURES="$PWD/$out/figures.jsonl"
export RELIABILITY_SCALE=5
export RELIABILITY_FUZZ_EXAMPLES="${RELIABILITY_FUZZ_EXAMPLES:-100000}"
export RELIABILITY_OVERLOAD_SECONDS="${RELIABILITY_OVERLOAD_SECONDS:-60}"
export RELIABILITY_RESTARTS="${RELIABILITY_RESTARTS:-20}"

declare -A files=(
  [isolation]=tests/reliability/test_tenant_isolation.py
  [bombs]=tests/reliability/test_bombs.py
  [fuzz]=bench/reliability/fuzz_long.py
  [atheris]=bench/reliability/atheris_probe.py
  [durability]=tests/reliability/test_durability.py
  [overload]=tests/reliability/test_overload.py
  [restarts]=tests/reliability/test_rolling_restart.py
)
stages=("$@")
[[ ${#stages[@]} -gt 0 ]] || stages=(isolation bombs durability overload restarts fuzz atheris)
status=0
for stage in "${stages[@]}"; do
  file=${files[$stage]:?unknown stage $stage}
  printf '[bench reliability] %s (%s)\n' "$stage" "$(date -u +%H:%M:%S)"
  if [[ $stage == atheris ]]; then
    uv run --locked python "$file" 5000000 300 || status=1
    uv run --locked python "$file" --render 5000000 300 || status=1
    continue
  fi
  if [[ $file == *.py && $file != tests/* ]]; then
    uv run --locked python "$file" || status=1
    continue
  fi
  # The per-test timeout is lifted: these runs are long on purpose.
  uv run --locked pytest "$file" -q -s -p no:cacheprovider --timeout 10800 \
    | grep -oE '\[figure\].*|[0-9]+ (passed|failed|xfailed|error).*' || status=1
done
uv run --locked python bench/reliability/report.py "$RELIABILITY_FIGURES" > "$out/summary.md" || status=1
cat "$out/summary.md"
exit $status
