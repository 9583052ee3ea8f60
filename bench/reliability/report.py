"""Summarise the reliability figures (JSON lines) as Markdown and check the benchmark targets.

Targets checked here, not in CI (timed assertions flake on a shared machine): each header bomb
refused in under 100 ms with under 50 MB of peak-RSS growth; >= 100,000 fuzz inputs; 0 failed
requests over the rolling restarts; overload replies only 2xx/429/503+Retry-After. Exit 1 on a miss.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

BOMB_MS = 100.0
BOMB_MB = 50.0
FUZZ_INPUTS = 100_000


def misses(rows: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for row in rows:
        kind = row["promise"]
        if kind == "bomb" and (row["ms"] >= BOMB_MS or row["rss_growth_mb"] >= BOMB_MB):
            out.append(f"bomb {row['case']}: {row['ms']} ms, {row['rss_growth_mb']} MB")
        if kind == "fuzz upload+transform (long)" and row["inputs"] < FUZZ_INPUTS:
            out.append(f"fuzz ran {row['inputs']} inputs, fewer than {FUZZ_INPUTS}")
        if kind == "fuzz upload+transform (long)" and row["failures"]:
            out.append(f"fuzz: {row['failures']} failing inputs (5xx or hang)")
        if kind == "rolling restarts" and row["failed"]:
            out.append(f"rolling restarts: {row['failed']} failed requests")
        if kind == "overload" and (row["missing_retry_after"] or row["socket_errors"]):
            out.append(f"overload: {row}")
        if kind.startswith("durability") and (row["partial_visible"] or row["ack_missing"]):
            out.append(f"{kind}: {row}")
        if kind.startswith("atheris") and row["exit_code"]:
            out.append(f"{kind}: libFuzzer exit {row['exit_code']}: {row['crash']}")
        if kind.startswith("tenant isolation") and row["leaks"]:
            out.append(f"{kind}: {row['leaks']} leaks")
    return out


def table(rows: list[dict[str, Any]]) -> str:
    keys = sorted({k for row in rows for k in row} - {"promise"})
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row.get(k, "")) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last figure per (promise, case): figures.jsonl keeps every run; summary: newest."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        last[(row["promise"], str(row.get("case", "")))] = row
    return list(last.values())


def main(path: str) -> int:
    everything = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    rows = latest(everything)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["promise"]].append(row)
    print("# Reliability benchmark figures\n")
    print(f"Newest figure per promise and case, of {len(everything)} in {Path(path).name}.\n")
    for promise, members in groups.items():
        print(f"## {promise}\n\n{table(members)}\n")
    missed = misses(rows)
    print("## Targets\n")
    print("\n".join(f"- MISSED: {m}" for m in missed) if missed else "- all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
