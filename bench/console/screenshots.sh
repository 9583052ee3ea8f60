#!/usr/bin/env bash
# Screenshots of the delivery console for docs/console.md, taken by the browser tests at the
# moments they check: the deliveries list, an aborted delivery, a running delivery, a dashboard.
# Needs Debian's chromium and prometheus (scripts/setup.sh installs both when run as root).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/sbin"
if command -v uv >/dev/null 2>&1; then UV=(uv); else UV=(python3 -m uv); fi
out=docs/img/console
mkdir -p "$out"
CONSOLE_SCREENSHOTS="$PWD/$out" "${UV[@]}" run --locked pytest tests/console/test_browser.py -q -p no:cacheprovider "$@"
ls -l "$out"
