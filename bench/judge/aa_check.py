"""A longer A/A run of our judge alone, to bound its false-fail rate more tightly.

    uv run python bench/judge/aa_check.py [--runs 4000] [--seed 7]

Same reference traffic and judge schedule as the main evaluation, a different seed, split over
two worker processes. Prints one markdown table row with the 95% Wilson upper bound.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from judge_eval.harness import evaluate, ours
from judge_eval.report import wilson_upper
from judge_eval.scenarios import AA
from judge_eval.traffic import TrafficModel


def fails(item: tuple[int, int]) -> tuple[int, int]:
    seed, runs = item
    (result,) = evaluate(TrafficModel(), AA, runs, seed, [ours()], ())
    return int(np.isfinite(result.fail_time).sum()), int(np.asarray(result.timed_out).sum())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--chunks", type=int, default=8)
    args = parser.parse_args()
    if not 100 <= args.runs <= 1_000_000:
        parser.error("--runs must be in [100, 1000000]")
    if not 1 <= args.chunks <= 1000:
        parser.error("--chunks must be in [1, 1000]")
    size = args.runs // args.chunks
    items = [(args.seed * 1000 + c, size) for c in range(args.chunks)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(fails, items))
    runs = size * args.chunks
    failed = sum(f for f, _ in outcomes)
    timed_out = sum(t for _, t in outcomes)
    rate = failed / runs
    print(
        f"| A/A, ours, {runs} runs (seed {args.seed}) | {failed} false fails = {100 * rate:.2f}% "
        f"({timed_out} by timeout); 95% upper bound {100 * wilson_upper(rate, runs):.2f}% |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
