#!/usr/bin/env bash
# The README's first command (`make local`): bring up the local environment (service per track,
# HAProxy, Prometheus, synthetic traffic), deliver the current working tree as a canary with live
# progress, and end with the verdict tables and the ledger entry. Exit 0 means promoted.
# Afterwards: `uv run deliver status --env local`, `deliver ledger`, `deliver dora`,
# and `uv run deliver env down --env local` to stop everything.
set -euo pipefail
cd "$(dirname "$0")/.."
# Let Python cache bytecode: some machines set PYTHONDONTWRITEBYTECODE, and then every
# process recompiles the Pulumi SDKs (25 s instead of 4 s per program evaluation).
unset PYTHONDONTWRITEBYTECODE
export PATH="$PATH:/usr/sbin"  # haproxy lives in /usr/sbin on Debian
if command -v uv >/dev/null 2>&1; then UV=(uv); else UV=(python3 -m uv); fi
deliver() { "${UV[@]}" run --locked deliver "$@"; }

echo "[local] bringing up the local environment (.state/local)"
deliver env up --env local
echo "[local] delivering the working tree as a canary (in waves of cells when cells are configured)"
set +e
deliver run --env local --version worktree
status=$?
set -e
if [ -f environments/cells.local.yaml ]; then
  echo "[local] cells (environments/cells.local.yaml): what each cell runs, which cells lag"
  deliver status --env local
fi
echo "[local] ledger (.state/ledger/local.jsonl):"
deliver ledger --env local | tail -n 6
deliver dora --env local
echo "[local] the console (ledger, verdicts, dashboards' data): uv run deliver console --env local"
echo "[local]   then open http://127.0.0.1:8470/"
exit $status
