"""Cells and waves past one machine: 50 cells, 2,000 tenants, Zipf traffic, several wave plans.

    uv run python bench/cells/sim.py [--runs 200] [--seed 15] [--markdown]

For each wave plan and each kind of version it reports the share of tenants a bad version reached
before the fleet stopped, the time to that stop, the false stops per rollout of a good version,
and the time to roll out every cell. Seeded, numpy-vectorised over runs; the canary verdicts use
the judge's Fisher test (as `judge_stats.fisher_exact`) and the between-waves check is the real
`delivery.cells.experiment.judge_experiment`; the waves come from `delivery.cells.schema`.

Model (docs/cells.md, "Simulation"):
- Fleet: 5,000 req/s; tenant shares Zipf(s=1) over 2,000 tenants; each tenant's own 5xx rate is
  0.1% times a lognormal(0, 0.5) factor. Tenants are placed largest first into the least loaded
  cell with room (at most 60 tenants a cell). Risk tiers follow traffic: the 20% busiest cells
  are high risk, the next 40% medium, the rest low, so wave 0 is a small cell.
- Canary in a cell: prod's steps (2, 10, 25, 50% for 600 s each), canary and baseline Poisson
  at the step's weight. The verdict's 5xx metric is Fisher's exact test on the cell aggregate
  and on every tenant (the pooled z test once a scope has over 200 events, where the two
  agree), Bonferroni over the scopes that can reach significance (Tarone, with the
  smallest attainable p taken as 2^-events), at the metric's share of the step budget
  (1 - confidence) / 3, one look per step. The judge's other metrics are not simulated; they add
  their measured A/A false-fail rate (docs/judge.md: 0.45% a step at confidence 0.99, scaled
  to the confidence, two thirds of it). A step with fewer than 500 canary requests after its
  2 x 60 s extensions fails (inconclusive).
- Between waves: each wave bakes 30 minutes; then the natural experiment compares every cell's
  5xx ratio over the bake with the same cell over 30 minutes before the rollout (cells drift
  by a lognormal(0, 0.1) factor per window), at alpha = 1% / (waves - 1), tolerance 10%.
- Judge budgets: "per cell" keeps prod's confidence (0.99) in every cell; "fleet" splits the
  same 1% over the 50 cells (confidence 1 - 0.01/50 per cell): the ADR 134 choice.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from delivery.cells.experiment import CellCounts, check_alpha, judge_experiment
from delivery.cells.schema import Cell, Risk, WavePlan, WaveSpec, resolve_plan
from scipy import special, stats

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

N_CELLS = 50
N_TENANTS = 2000
FLEET_RPS = 5000.0
MAX_TENANTS = 60
BASE_5XX = 0.001
STEPS = ((0.02, 600.0), (0.10, 600.0), (0.25, 600.0), (0.50, 600.0))
EXTENSION = 120.0
MIN_REQUESTS = 500
WAVE_BAKE = 1800.0
EXPERIMENT_BUDGET = 0.01
EXPERIMENT_TOLERANCE = 0.10
EXACT_EVENTS = 200
AA_STEP_RATE_AT_99 = 0.0045  # measured whole-verdict A/A false fails per step (docs/judge.md)


@dataclass(frozen=True)
class Fleet:
    rps: FloatArray  # per tenant
    p5xx: FloatArray  # per tenant, the stable version's 5xx probability
    cell_of: IntArray  # per tenant
    cells: tuple[Cell, ...]
    cell_rps: FloatArray


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # good | global | feature
    factor: float = 1.0  # global: 5xx multiplier
    tenant_share: float = 0.0  # feature: share of tenants hit
    added: float = 0.0  # feature: added 5xx probability on those tenants


SCENARIOS = (
    Scenario("good version", "good"),
    Scenario("bad: 5xx x1.5 everywhere", "global", factor=1.5),
    Scenario("bad: 5xx x3 everywhere", "global", factor=3.0),
    Scenario("bad: +5pp 5xx for 2% of tenants", "feature", tenant_share=0.02, added=0.05),
)


def make_fleet(rng: np.random.Generator) -> Fleet:
    ranks = np.arange(1, N_TENANTS + 1, dtype=np.float64)
    share = (1.0 / ranks) / (1.0 / ranks).sum()
    rps = FLEET_RPS * rng.permutation(share)
    p5xx = BASE_5XX * rng.lognormal(0.0, 0.5, N_TENANTS)
    cell_of = np.empty(N_TENANTS, dtype=np.int64)
    load = np.zeros(N_CELLS)
    count = np.zeros(N_CELLS, dtype=np.int64)
    for t in np.argsort(-rps):
        room = count < MAX_TENANTS
        c = int(np.flatnonzero(room)[np.argmin(load[room])])
        cell_of[t], load[c], count[c] = c, load[c] + rps[t], count[c] + 1
    order = np.argsort(-load)
    risk = np.empty(N_CELLS, dtype=object)
    risk[order[: N_CELLS // 5]] = Risk.HIGH
    risk[order[N_CELLS // 5 : 3 * N_CELLS // 5]] = Risk.MEDIUM
    risk[order[3 * N_CELLS // 5 :]] = Risk.LOW
    cells = tuple(
        Cell(f"c{i:02d}", Risk(risk[i]), MAX_TENANTS, float(load[i] * 1.5)) for i in range(N_CELLS)
    )
    return Fleet(rps, p5xx, cell_of, cells, load)


def plans(fleet: Fleet) -> list[WavePlan]:
    cells = fleet.cells
    by_tier = {r: sorted(c.name for c in cells if c.risk is r) for r in Risk}

    def spec(*waves: WaveSpec) -> tuple[WaveSpec, ...]:
        return waves

    bake = WAVE_BAKE
    shapes = {
        "1 -> all": spec(WaveSpec(bake, count=1), WaveSpec(0, rest=True)),
        "1 -> 2 -> 4 -> ...": spec(
            *(WaveSpec(bake, count=n) for n in (1, 2, 4, 8, 16)), WaveSpec(0, rest=True)
        ),
        "1 -> 10% -> 50% -> 100%": spec(
            WaveSpec(bake, count=1),
            WaveSpec(bake, share=0.1),
            WaveSpec(bake, share=0.5),
            WaveSpec(0, rest=True),
        ),
        "one box per tier -> rest": spec(
            WaveSpec(bake, cells=(by_tier[Risk.LOW][0],)),
            WaveSpec(bake, cells=(by_tier[Risk.MEDIUM][0],)),
            WaveSpec(bake, cells=(by_tier[Risk.HIGH][0],)),
            WaveSpec(0, rest=True),
        ),
        "1 -> 3 -> 12 -> rest": spec(
            WaveSpec(bake, count=1),
            WaveSpec(bake, count=3),
            WaveSpec(bake, count=12),
            WaveSpec(0, rest=True),
        ),
    }
    return [resolve_plan(name, list(waves), cells) for name, waves in shapes.items()]


def effect(fleet: Fleet, scenario: Scenario, runs: int, rng: np.random.Generator) -> FloatArray:
    """Per run and tenant, the new version's 5xx probability; a feature defect hits a fresh
    random set of tenants in every run."""
    base = np.broadcast_to(fleet.p5xx, (runs, N_TENANTS))
    if scenario.kind == "global":
        return np.minimum(1.0, base * scenario.factor)
    if scenario.kind == "feature":
        hit = rng.random((runs, N_TENANTS)) < scenario.tenant_share
        return np.minimum(1.0, base + hit * scenario.added)
    return base.copy()


def greater_p(ec: FloatArray, nc: FloatArray, eb: FloatArray, nb: FloatArray) -> FloatArray:
    """One-sided p that the canary's 5xx ratio is higher: the judge's Fisher exact test while
    the events are few (where exactness matters), the pooled two-proportion z test above
    EXACT_EVENTS events (where the two agree and Fisher's tail sums get slow)."""
    p = np.ones_like(ec)
    small = (ec + eb <= EXACT_EVENTS) & (nc > 0) & (nb > 0)
    if small.any():
        # Fisher's one-sided p as judge_stats.fisher_exact computes it, with the hypergeometric's
        # symmetric parametrisation (draws = events, not requests): the same value, and scipy's
        # tail sum then runs over at most EXACT_EVENTS terms instead of every canary request.
        e, n = ec[small] + eb[small], nc[small] + nb[small]
        p[small] = stats.hypergeom.sf(ec[small] - 1, n, nc[small], e)
    big = ~small & (nc > 0) & (nb > 0)
    pooled = (ec[big] + eb[big]) / (nc[big] + nb[big])
    se = np.sqrt(pooled * (1 - pooled) * (1 / nc[big] + 1 / nb[big]))
    z = (ec[big] / nc[big] - eb[big] / nb[big]) / np.where(se > 0, se, np.inf)
    p[big] = special.ndtr(-z)
    return p


def canary_fail_step(
    fleet: Fleet, p_new: FloatArray, runs: int, confidence: float, rng: np.random.Generator
) -> IntArray:
    """Per run and cell, the first canary step whose verdict fails (0-based), or len(STEPS)."""
    alpha = (1.0 - confidence) / 3.0
    other = AA_STEP_RATE_AT_99 * (1.0 - confidence) / 0.01 * 2.0 / 3.0
    order = np.argsort(fleet.cell_of, kind="stable")
    cell_sorted = fleet.cell_of[order]
    starts = np.flatnonzero(np.r_[True, cell_sorted[1:] != cell_sorted[:-1]])
    rps, p_old, p_bad = fleet.rps[order], fleet.p5xx[order], p_new[:, order]
    first_fail = np.full((runs, N_CELLS), len(STEPS), dtype=np.int64)
    for s, (weight, bake) in enumerate(STEPS):
        lam = rps * weight * bake
        nc = rng.poisson(lam, (runs, N_TENANTS))
        nb = rng.poisson(lam, (runs, N_TENANTS))
        ec = rng.binomial(nc, p_bad)
        eb = rng.binomial(nb, p_old)
        agg = [np.add.reduceat(x, starts, axis=1).astype(np.float64) for x in (nc, ec, nb, eb)]
        p_agg = greater_p(agg[1], agg[0], agg[3], agg[2])
        events = ec + eb
        m = 1 + np.add.reduceat((events >= 1).astype(np.int64), starts, axis=1)
        for _ in range(6):  # Tarone: scopes that can reach alpha / m
            threshold = np.ceil(np.log2(m / alpha)).astype(np.int64)
            per_tenant = threshold[:, cell_sorted]
            m = 1 + np.add.reduceat((events >= per_tenant).astype(np.int64), starts, axis=1)
        failed = p_agg <= alpha / m
        candidates = np.nonzero(ec >= 3)
        if candidates[0].size:
            p_t = greater_p(
                *(x[candidates].astype(np.float64) for x in (ec, nc, eb, nb)),
            )
            cell_idx = cell_sorted[candidates[1]]
            sig = p_t <= alpha / m[candidates[0], cell_idx]
            np.logical_or.at(failed, (candidates[0][sig], cell_idx[sig]), True)
        short = agg[0] * (bake + EXTENSION) / bake < MIN_REQUESTS
        failed |= short | (rng.random((runs, N_CELLS)) < other)
        first_fail = np.where((first_fail == len(STEPS)) & failed, s, first_fail)
    return first_fail


def cell_rates(fleet: Fleet, p: FloatArray) -> FloatArray:
    """Each cell's 5xx ratio (per run if p is per run): its tenants' rates, traffic-weighted."""
    member = np.zeros((N_TENANTS, N_CELLS))
    member[np.arange(N_TENANTS), fleet.cell_of] = 1.0
    return np.asarray((p * fleet.rps) @ member / fleet.cell_rps)


@dataclass
class Outcome:
    stopped: bool
    stop_time: float
    exposed_tenants: int  # in cells whose canary started before the stop
    promoted_tenants: int  # in cells that made the version stable before the stop
    by_experiment: bool


def run_plan(
    plan: WavePlan,
    fleet: Fleet,
    fail_step: IntArray,  # one run's row
    rate_old: FloatArray,
    rate_new: FloatArray,
    rng: np.random.Generator,
) -> Outcome:
    index = {c.name: i for i, c in enumerate(fleet.cells)}
    tenants = np.bincount(fleet.cell_of, minlength=N_CELLS)
    full = sum(b for _, b in STEPS)
    cumulative = np.cumsum([b for _, b in STEPS])
    alpha = check_alpha(EXPERIMENT_BUDGET, plan)
    t = 0.0
    started: list[int] = []
    promoted: list[int] = []
    for k, wave in enumerate(plan.waves):
        ids = [index[c] for c in wave.cells]
        started += ids
        steps = fail_step[ids]
        if (steps < len(STEPS)).any():
            first = float(cumulative[steps[steps < len(STEPS)]].min())
            reached, stable = int(tenants[started].sum()), int(tenants[promoted].sum())
            return Outcome(True, t + first, reached, stable, False)
        promoted += ids
        t += full
        if k == len(plan.waves) - 1:
            break
        t += wave.bake_seconds
        n = rng.poisson(fleet.cell_rps * wave.bake_seconds, (2, N_CELLS)).astype(np.float64)
        drift = rng.lognormal(0.0, 0.1, (2, N_CELLS))
        now_rate = rate_old.copy()
        now_rate[promoted] = rate_new[promoted]
        before = rng.binomial(n[0].astype(np.int64), np.minimum(1, rate_old * drift[0]))
        after = rng.binomial(n[1].astype(np.int64), np.minimum(1, now_rate * drift[1]))
        rows = [
            CellCounts(fleet.cells[i].name, n[0, i], float(before[i]), n[1, i], float(after[i]))
            for i in range(N_CELLS)
        ]
        on_new = set(promoted)
        verdict = judge_experiment(
            k,
            {"5xx": [r for i, r in enumerate(rows) if i in on_new]},
            {"5xx": [r for i, r in enumerate(rows) if i not in on_new]},
            alpha=alpha,
            tolerance={"5xx": EXPERIMENT_TOLERANCE},
        )
        if verdict.worse:
            reached, stable = int(tenants[started].sum()), int(tenants[promoted].sum())
            return Outcome(True, t, reached, stable, True)
    return Outcome(False, math.nan, N_TENANTS, N_TENANTS, False)


def plan_time(plan: WavePlan) -> float:
    """Time to roll out every cell when nothing stops: each wave's canary, then its bake."""
    canary = sum(b for _, b in STEPS)
    return sum(canary for _ in plan.waves) + sum(w.bake_seconds for w in plan.waves[:-1])


def percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def hours(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds / 3600:.1f} h"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if not 10 <= args.runs <= 5000:
        parser.error("--runs must be in [10, 5000]")
    rng = np.random.default_rng(args.seed)
    fleet = make_fleet(rng)
    all_plans = plans(fleet)
    head = (
        f"Fleet: {N_CELLS} cells, {N_TENANTS} tenants, {FLEET_RPS:g} req/s, Zipf(1); cell "
        f"traffic min {fleet.cell_rps.min():.0f}, median {np.median(fleet.cell_rps):.0f}, "
        f"max {fleet.cell_rps.max():.0f} req/s; {args.runs} runs per row, seed {args.seed}."
    )
    good = [
        "| plan | waves | judge budget | false stops per rollout (by the experiment) "
        "| time to roll out all cells |",
        "|---|---|---|---|---|",
    ]
    bad = [
        "| plan | judge budget | bad version | stopped (by the experiment) | tenants reached "
        "before the stop, mean | p95 | on it as stable, mean | time to stop, median |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for budget, confidence in (("per cell", 0.99), ("fleet", 1 - 0.01 / N_CELLS)):
        for scenario in SCENARIOS:
            p_new = effect(fleet, scenario, args.runs, rng)
            fail_step = canary_fail_step(fleet, p_new, args.runs, confidence, rng)
            rate_old, rate_new = cell_rates(fleet, fleet.p5xx), cell_rates(fleet, p_new)
            for plan in all_plans:
                outcomes = [
                    run_plan(plan, fleet, fail_step[r], rate_old, rate_new[r], rng)
                    for r in range(args.runs)
                ]
                stopped = np.array([o.stopped for o in outcomes])
                reach = np.array([o.exposed_tenants for o in outcomes]) / N_TENANTS
                stable = np.array([o.promoted_tenants for o in outcomes]) / N_TENANTS
                stop_t = np.array([o.stop_time for o in outcomes])
                clean = plan_time(plan)
                by_exp = np.mean([o.by_experiment for o in outcomes])
                stops = f"{percent(stopped.mean())} ({percent(float(by_exp))})"
                if scenario.kind == "good":
                    good.append(
                        f"| {plan.name} | {len(plan.waves)} | {budget} | {stops} | {hours(clean)} |"
                    )
                    continue
                median_stop = float(np.nanmedian(stop_t)) if stopped.any() else math.nan
                bad.append(
                    f"| {plan.name} | {budget} | {scenario.name} | {stops} | "
                    f"{percent(reach.mean())} | {percent(float(np.quantile(reach, 0.95)))} | "
                    f"{percent(stable.mean())} | {hours(median_stop)} |"
                )
            print(f"done: {budget} / {scenario.name}", file=sys.stderr)
    lines = [head, "", *good, "", *bad]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
