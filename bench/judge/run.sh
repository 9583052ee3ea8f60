#!/usr/bin/env bash
# The canary judge's full evaluation (issue 6) and its speed benchmark (issue 5).
# Regenerates the RESULTS section of docs/judge.md, docs/img/judge/*.png and
# bench/judge/results.json. Takes about 10-15 minutes on 2 cores.
#   bench/judge/run.sh              # everything
#   SCALE=0.1 bench/judge/run.sh    # a quick look (fewer runs per cell; do not commit its output)
#   FIT=1 bench/judge/run.sh        # also re-measure the service's latency (needs the service)
set -euo pipefail
cd "$(dirname "$0")/../.."
SCALE="${SCALE:-1}"
WORKERS="${WORKERS:-2}"
if [[ "${FIT:-0}" == 1 ]]; then
  uv run --locked python bench/judge/fit_latency.py --mix renditions --requests 360 --rate 4
  uv run --locked python bench/judge/fit_latency.py --mix stored --requests 1500 --rate 50
fi
speed=$(uv run --locked python bench/judge/judge_speed.py)
echo "$speed"
python3 - "$speed" <<'PY'
import sys
from pathlib import Path
doc = Path("docs/judge.md")
begin, end = "<!-- SPEED:BEGIN -->", "<!-- SPEED:END -->"
text = doc.read_text()
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
doc.write_text(f"{head}{begin}\n| benchmark | measured | target |\n|---|---|---|\n{sys.argv[1]}\n{end}{tail}")
PY
uv run --locked python -m delivery.simulation --doc docs/judge.md --img docs/img/judge \
  --json bench/judge/results.json --workers "$WORKERS" --scale "$SCALE"
