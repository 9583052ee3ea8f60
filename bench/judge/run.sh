#!/usr/bin/env bash
# The canary judge's full evaluation (issues 6 and 12) and its speed benchmark (issue 5).
# Regenerates every generated section of docs/judge.md (SPEED, AA, SHARE, RESULTS),
# docs/img/judge/*.png and bench/judge/results.json. About 12 CPU-minutes per core:
# roughly 15 minutes on an idle 2-core machine (61 minutes while other suites loaded it).
#   bench/judge/run.sh              # everything
#   SCALE=0.1 bench/judge/run.sh    # a quick look (fewer runs per cell; do not commit its output)
#   FIT=1 bench/judge/run.sh        # also re-measure the service's latency (needs the service)
#   RENDER=1 bench/judge/run.sh     # only re-render tables and plots from bench/judge/results.json
#   DELIVERY=1 bench/judge/run.sh   # only issue 12's whole deliveries on realistic traffic
#                                   # (SCALE=1: 1,000 runs in the headline cells; hours here)
set -euo pipefail
cd "$(dirname "$0")/../.."
SCALE="${SCALE:-1}"
WORKERS="${WORKERS:-2}"

# fill MARKER TEXT: replace what is between <!-- MARKER:BEGIN --> and <!-- MARKER:END -->.
fill() {
  python3 - "$1" "$2" <<'PY'
import sys
from pathlib import Path
doc = Path("docs/judge.md")
begin, end = f"<!-- {sys.argv[1]}:BEGIN -->", f"<!-- {sys.argv[1]}:END -->"
head, rest = doc.read_text().split(begin, 1)
_, tail = rest.split(end, 1)
doc.write_text(f"{head}{begin}\n{sys.argv[2]}\n{end}{tail}")
PY
}

deliveries() {
  rm -f bench/judge/deliveries.jsonl
  # docs/judge.md records when and under what load the tables were made.
  echo "start $(date -u '+%Y-%m-%d %H:%M UTC'); $(uptime)" | tee bench/judge/deliveries.log
  uv run --locked python bench/judge/deliveries.py --out bench/judge/deliveries.jsonl \
    --workers "$WORKERS" --scale "$SCALE"
  echo "end $(date -u '+%Y-%m-%d %H:%M UTC'); $(uptime)" | tee -a bench/judge/deliveries.log
  uv run --locked python bench/judge/deliveries.py --render bench/judge/deliveries.jsonl \
    --doc docs/judge.md
}
if [[ "${DELIVERY:-0}" == 1 ]]; then
  deliveries
  exit 0
fi
if [[ "${RENDER:-0}" == 1 ]]; then
  exec uv run --locked python -m judge_eval --from-json bench/judge/results.json \
    --doc docs/judge.md --img docs/img/judge
fi
if [[ "${FIT:-0}" == 1 ]]; then
  uv run --locked python bench/judge/fit_latency.py --mix renditions --requests 360 --rate 4
  uv run --locked python bench/judge/fit_latency.py --mix stored --requests 1500 --rate 50
fi
speed=$(uv run --locked python bench/judge/judge_speed.py)
echo "$speed"
fill SPEED "$(printf '| benchmark | measured | target |\n|---|---|---|\n%s' "$speed")"
aa=$(uv run --locked python bench/judge/aa_check.py --runs 4000)
echo "$aa"
fill AA "$(printf '| run | result |\n|---|---|\n%s' "$aa")"
share=$(uv run --locked python bench/judge/aggregate_share.py --scale 0.6)
echo "$share"
fill SHARE "$share"
uv run --locked python -m judge_eval --doc docs/judge.md --img docs/img/judge \
  --json bench/judge/results.json --workers "$WORKERS" --scale "$SCALE"
deliveries
