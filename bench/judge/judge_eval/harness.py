"""Run judges over seeded simulated steps and measure them.

Our judge runs as the pipeline runs it: an interim look every `look_seconds` during the bake
(which may only fail the canary), the final look at the end of the bake, then, while the verdict
is inconclusive, more looks during the extension; an extension that runs out fails the canary.
The Kayenta-like comparison is our judge's code with an aggregate-only policy, no sample guard
and Mann-Whitney on per-interval ratios, judged once at the end of the bake.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from delivery.judge import judge
from delivery.judge_policy import JudgePolicy
from delivery.judge_policy import look_schedule as pipeline_looks

from judge_eval.baselines import ARGO, FLAGGER, ThresholdJudge, threshold_fail_times
from judge_eval.observe import observation, run_intervals
from judge_eval.scenarios import Scenario, affected_tenants, tenant_shares, track_effects
from judge_eval.traffic import FloatArray, TrackCounts, TrafficModel, generate_track

BATCH = 200  # runs generated at once: bounds memory (runs x tenants x intervals x buckets)


@dataclass(frozen=True)
class PolicyJudge:
    """A judge built from our judge's code and a policy."""

    name: str
    policy: JudgePolicy
    interim: bool = True  # interim looks during the bake
    extend: bool = True  # extend the bake while inconclusive


@dataclass(frozen=True)
class Result:
    """Per run: when the judge failed the canary (+inf: it passed) and why."""

    judge: str
    fail_time: FloatArray
    timed_out: np.ndarray  # bool: failed because the extension ran out while inconclusive
    pass_time: FloatArray  # when a pass was given (+inf: failed)

    @property
    def fail_rate(self) -> float:
        return float(np.isfinite(self.fail_time).mean())

    @property
    def timeout_rate(self) -> float:
        return float(np.asarray(self.timed_out).mean())

    def median_fail_time(self) -> float:
        times = self.fail_time[np.isfinite(self.fail_time)]
        return float(np.median(times)) if times.size else float("nan")

    def median_pass_time(self) -> float:
        times = self.pass_time[np.isfinite(self.pass_time)]
        return float(np.median(times)) if times.size else float("nan")

    def exposure(self, model: TrafficModel) -> float:
        """Mean share of the step's user requests served by the bad canary before the verdict
        (a canary that passes served its weight for the whole bake, and is then promoted)."""
        end = np.where(np.isfinite(self.fail_time), self.fail_time, model.window_seconds)
        served = np.minimum(end, model.window_seconds) / model.window_seconds
        return float(np.mean(model.weight * served))


def ours(policy: JudgePolicy | None = None) -> PolicyJudge:
    return PolicyJudge("ours", policy or JudgePolicy())


def aggregate_mwu(policy: JudgePolicy | None = None) -> PolicyJudge:
    base = policy or JudgePolicy()
    metrics = tuple(
        replace(m, per_tenant=False, test="mwu_intervals" if m.kind == "error_ratio" else m.test)
        for m in base.metrics
    )
    return PolicyJudge(
        "aggregate-only MWU (Kayenta-like)",
        replace(base, metrics=metrics, min_requests=0, interim_looks=0),
        interim=False,
        extend=False,
    )


def evaluate(
    model: TrafficModel,
    scenario: Scenario,
    runs: int,
    seed: int,
    policy_judges: Sequence[PolicyJudge],
    threshold_judges: Sequence[ThresholdJudge] = (FLAGGER, ARGO),
    look_seconds: float = 30.0,
) -> list[Result]:
    """All judges on the same `runs` simulated steps; reproducible from `seed`."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    key = f"{scenario.name}|{model}".encode()
    rng = np.random.default_rng([seed, zlib.crc32(key)])
    shares = tenant_shares(model, scenario)
    collected: dict[str, list[tuple[FloatArray, np.ndarray, FloatArray]]] = {}
    for start in range(0, runs, BATCH):
        size = min(BATCH, runs - start)
        affected = affected_tenants(model, scenario, size, rng)
        canary_effect, baseline_effect = track_effects(model, scenario, affected)
        canary = generate_track(model, shares, canary_effect, rng)
        baseline = generate_track(model, shares, baseline_effect, rng)
        for tj in threshold_judges:
            fail = threshold_fail_times(tj, model, canary)
            passed = np.where(np.isfinite(fail), np.inf, model.window_seconds)
            collected.setdefault(tj.name, []).append((fail, np.zeros(size, bool), passed))
        for pj in policy_judges:
            collected.setdefault(pj.name, []).append(
                _run_policy_judge(pj, model, canary, baseline, look_seconds)
            )
    return [
        Result(
            judge=name,
            fail_time=np.concatenate([c[0] for c in chunks]),
            timed_out=np.concatenate([c[1] for c in chunks]),
            pass_time=np.concatenate([c[2] for c in chunks]),
        )
        for name, chunks in collected.items()
    ]


def look_schedule(model: TrafficModel, look_seconds: float) -> tuple[list[int], int, list[int]]:
    """(interim looks, final look, extension looks) as interval counts: the interim looks of
    the pipeline's own `look_schedule` (as many as `look_seconds` apart would give), the final
    look at the end of the window, then one look every `look_seconds` of the extension."""
    step = max(1, round(look_seconds / model.interval_seconds))
    final = model.window_intervals
    count = len(range(step, final, step))
    interim = [
        round(t / model.interval_seconds)
        for t in pipeline_looks(model.window_seconds, model.interval_seconds, count)
    ]
    extension = list(range(final + step, model.total_intervals + 1, step))
    return interim, final, extension


def _run_policy_judge(
    pj: PolicyJudge,
    model: TrafficModel,
    canary: TrackCounts,
    baseline: TrackCounts,
    look_seconds: float,
) -> tuple[FloatArray, np.ndarray, FloatArray]:
    runs = canary.requests.shape[0]
    interim, final, extension = look_schedule(model, look_seconds)
    if not pj.interim:
        interim = []
    if not pj.extend:
        extension = []
    policy = replace(pj.policy, interim_looks=len(interim)) if pj.interim else pj.policy
    fail_time = np.full(runs, np.inf)
    pass_time = np.full(runs, np.inf)
    timed_out = np.zeros(runs, dtype=bool)
    seconds = model.interval_seconds
    for r in range(runs):
        intervals = run_intervals(model, canary, baseline, r)
        decided = False
        for k in interim:
            if judge(observation(model, intervals, k), policy, interim=True).outcome == "fail":
                fail_time[r] = k * seconds
                decided = True
                break
        if decided:
            continue
        for k in [final, *extension]:
            outcome = judge(observation(model, intervals, k), policy).outcome
            if outcome == "fail":
                fail_time[r] = k * seconds
                decided = True
                break
            if outcome == "pass":
                pass_time[r] = k * seconds
                decided = True
                break
        if not decided:  # still inconclusive when the extension ran out: the pipeline fails
            fail_time[r] = ([final, *extension][-1]) * seconds
            timed_out[r] = True
    return fail_time, timed_out, pass_time
