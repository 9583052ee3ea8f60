#!/usr/bin/env bash
# Cells and waves past one machine (issue 15): 50 cells, 2,000 tenants, Zipf traffic, several
# wave plans. Regenerates the SIMULATION section of docs/cells.md. Seeded; numpy-vectorised;
# one process. About 1 CPU-minute at the default 200 runs (3-6 minutes on a busy machine).
#   bench/cells/run.sh             # the table in docs/cells.md
#   RUNS=40 bench/cells/run.sh     # a quick look (do not commit its output)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${RUNS:-200}"
SEED="${SEED:-15}"
table=$(uv run --locked python bench/cells/sim.py --runs "$RUNS" --seed "$SEED")
echo "$table"
python3 - "$table" <<'PY'
import sys
from pathlib import Path
doc = Path("docs/cells.md")
begin, end = "<!-- SIMULATION:BEGIN -->", "<!-- SIMULATION:END -->"
head, rest = doc.read_text().split(begin, 1)
_, tail = rest.split(end, 1)
doc.write_text(f"{head}{begin}\n{sys.argv[1]}\n{end}{tail}")
PY
