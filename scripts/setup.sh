#!/usr/bin/env bash
# One unattended, idempotent setup for a fresh machine. Both README commands call it.
# 1. the toolchain (uv), 2. the locked Python environment, 3. the Debian packages the
# project runs for real (prometheus/promtool, haproxy, wrk), only when root with apt.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }

if command -v uv >/dev/null 2>&1; then
  UV=(uv)
elif python3 -m uv --version >/dev/null 2>&1; then
  UV=(python3 -m uv)
else
  say "uv missing: python3 -m pip install uv"
  python3 -m pip install --quiet --disable-pip-version-check uv
  UV=(python3 -m uv)
fi
say "toolchain: $("${UV[@]}" --version)"

# Debian package -> the command it provides.
declare -A TOOLS=([prometheus]=prometheus [prometheus-promtool]=promtool [haproxy]=haproxy [wrk]=wrk [prometheus-alertmanager]=prometheus-alertmanager [chromium]=chromium)
missing=()
for pkg in "${!TOOLS[@]}"; do
  command -v "${TOOLS[$pkg]}" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin" command -v "${TOOLS[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    # promtool ships inside Debian's prometheus package.
    pkgs=$(printf '%s\n' "${missing[@]}" | sed 's/^prometheus-promtool$/prometheus/' | sort -u | tr '\n' ' ')
    say "apt-get install $pkgs"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  else
    say "missing commands: ${missing[*]}"
    say "  Debian/Ubuntu: sudo apt-get install prometheus haproxy wrk"
    say "  macOS:         brew install prometheus haproxy wrk"
    say "the local environment and its end-to-end tests need them"
  fi
else
  say "prometheus, promtool, haproxy, wrk: present"
fi

say "uv sync --locked"
"${UV[@]}" sync --locked --quiet
say "environment ready: .venv"
