"""Does giving the aggregate its own share of a per-tenant metric's alpha buy power back?

Runs our judge as it is (aggregate and tenants corrected as one Holm family) and with
`aggregate_alpha_share` 0.5, on the same seeded samples, for the scenarios where the main
evaluation showed the per-tenant view costing aggregate power. Prints a markdown table.

    uv run python bench/judge/aggregate_share.py [--scale 1.0]
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

from delivery.judge_policy import JudgePolicy
from judge_eval.harness import PolicyJudge, Result, evaluate
from judge_eval.report import wilson_upper
from judge_eval.scenarios import AA, STANDARD, Scenario
from judge_eval.traffic import TrafficModel

SEED = 20261124
NAMES = (
    "A/A",
    "+0.5pp 5xx",
    "1 of 20 tenants at 5% 5xx",
    "p99 +10% (scale)",
    "p99 +25% (tail)",
    "p99 +50% (tail)",
)


def judges() -> list[PolicyJudge]:
    return [
        PolicyJudge("one family (default)", JudgePolicy()),
        PolicyJudge("aggregate share 0.5", replace(JudgePolicy(), aggregate_alpha_share=0.5)),
    ]


def run(item: tuple[Scenario, int]) -> tuple[str, list[Result]]:
    scenario, runs = item
    return scenario.name, evaluate(TrafficModel(), scenario, runs, SEED, judges(), ())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    if not 0 < args.scale <= 10:
        parser.error("--scale must be in (0, 10]")
    items = [
        (s, max(20, round((1000 if s is AA else 300) * args.scale)))
        for s in STANDARD
        if s.name in NAMES
    ]
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = dict(pool.map(run, items))
    names = [j.name for j in judges()]
    print("| scenario | runs | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for scenario, runs in items:
        cells = []
        for result in results[scenario.name]:
            cell = f"{100 * result.fail_rate:.1f}%"
            if scenario is AA:
                cell += f" (<= {100 * wilson_upper(result.fail_rate, runs):.1f}%)"
            cells.append(cell)
        print(f"| {scenario.name} | {runs} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
