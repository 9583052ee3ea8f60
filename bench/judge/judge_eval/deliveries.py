"""Whole deliveries under realistic traffic, judged as the pipeline judges them (issue 12).

A delivery walks the environment's steps (weights, bakes, extensions from its policy file).
At each step the judge takes the interim looks of `look_schedule` (which may only fail), the
final look at the end of the bake, then one look per extension while it stays inconclusive;
the last is taken `at_limit`, where "inconclusive" becomes "not enough traffic". The policy is
the environment's own, spread over the delivery with `for_delivery`, exactly as the pipeline
does. Outcomes per run: promoted, aborted on harm (a false abort in an A/A run), or aborted
for lack of traffic; for one-step power runs, the time the canary was failed.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from delivery.judge import NOT_ENOUGH_TRAFFIC, JudgePolicy, judge
from delivery.judge_policy import look_schedule
from delivery.observation import Interval, StepObservation, TrackSeries

from judge_eval.observe import _track as track_intervals
from judge_eval.realistic import HEALTHY, Effect, StepTraffic, World, generate_step
from judge_eval.traffic import TrackCounts

Ending = Literal["promoted", "harm", "traffic"]
BATCH = 100


@dataclass(frozen=True)
class Plan:
    """A delivery's shape and judge policy, from environments/delivery.<env>.yaml."""

    name: str
    weights: tuple[float, ...]
    bakes: tuple[float, ...]
    interval_seconds: float
    max_extensions: int
    extension_seconds: float
    policy: JudgePolicy

    @classmethod
    def from_file(cls, path: Path) -> Plan:
        config = yaml.safe_load(path.read_text())
        canary = config["canary"]
        steps = canary["steps"]
        policy = JudgePolicy.from_mapping(config["judge"]).for_delivery(
            steps=len(steps), max_extensions=int(canary["max_extensions"])
        )
        return cls(
            name=str(config["environment"]),
            weights=tuple(s["weight"] / 100.0 for s in steps),
            bakes=tuple(float(s["bake_seconds"]) for s in steps),
            interval_seconds=float(canary["interval_seconds"]),
            max_extensions=int(canary["max_extensions"]),
            extension_seconds=float(canary["extension_seconds"]),
            policy=policy,
        )

    def one_step(self, weight: float, bake: float) -> Plan:
        """One step of this delivery's budget (the same per-look alphas), for power runs."""
        return Plan(
            self.name, (weight,), (bake,), self.interval_seconds, self.max_extensions,
            self.extension_seconds, self.policy,
        )  # fmt: skip

    def looks(self, step: int) -> tuple[list[int], list[int]]:
        """(interim looks, final and extension looks) of a step, as interval counts."""
        seconds = self.interval_seconds
        interim = [
            round(t / seconds)
            for t in look_schedule(self.bakes[step], seconds, self.policy.interim_looks)
        ]
        final = round(self.bakes[step] / seconds)
        per_extension = round(self.extension_seconds / seconds)
        return interim, [final + j * per_extension for j in range(self.max_extensions + 1)]


@dataclass(frozen=True)
class Outcomes:
    ending: list[Ending]
    seconds: list[float]  # when the delivery (or the single step) ended, from its start

    def rate(self, ending: Ending) -> float:
        return sum(e == ending for e in self.ending) / max(1, len(self.ending))


def run(
    plan: Plan, world: World, effect: Effect, runs: int, seed: int, *, until: float | None = None
) -> Outcomes:
    """`runs` deliveries; reproducible from `seed`, the plan, the world and the effect.

    until: stop the walk at that many seconds (a power run: was it failed by then?)."""
    key = f"{plan.name}|{world}|{effect}".encode()
    rng = np.random.default_rng([seed, zlib.crc32(key)])
    endings: list[Ending] = []
    seconds: list[float] = []
    names = world.tenant_names()
    for start in range(0, runs, BATCH):
        size = min(BATCH, runs - start)
        alive = np.ones(size, dtype=bool)
        ending: list[Ending] = ["promoted"] * size
        elapsed = np.zeros(size)
        for step, weight in enumerate(plan.weights):
            interim, finals = plan.looks(step)
            traffic = generate_step(
                world, effect, weight, finals[-1], plan.interval_seconds, size, rng
            )
            for r in np.flatnonzero(alive):
                k, how = _judge_step(plan, traffic, int(r), names, interim, finals, until)
                elapsed[r] += k * plan.interval_seconds
                if how != "promoted":
                    alive[r] = False
                    ending[r] = how
        endings.extend(ending)
        seconds.extend(elapsed.tolist())
    return Outcomes(endings, seconds)


def _judge_step(
    plan: Plan,
    traffic: StepTraffic,
    run_index: int,
    names: list[str],
    interim: list[int],
    finals: list[int],
    until: float | None,
) -> tuple[int, Ending]:
    """(intervals used, ending) of one step of one run; "promoted" means the step passed."""
    tracks = [_intervals(traffic, run_index, track, names) for track in (0, 1)]
    limit = math.inf if until is None else until / plan.interval_seconds
    policy = plan.policy
    for k in interim:
        if k > limit:
            return k, "promoted"
        if judge(_observation(plan, tracks, k), policy, interim=True).outcome == "fail":
            return k, "harm"
    for j, k in enumerate(finals):
        if k > limit:
            return k, "promoted"
        verdict = judge(_observation(plan, tracks, k), policy, at_limit=j == len(finals) - 1)
        if verdict.outcome == "pass":
            return k, "promoted"
        if verdict.outcome == "fail":
            traffic_short = verdict.reasons[0].startswith(NOT_ENOUGH_TRAFFIC)
            return k, "traffic" if traffic_short else "harm"
    return finals[-1], "traffic"  # unreachable: the last look is taken at the limit


def _intervals(
    traffic: StepTraffic, run_index: int, track: int, names: list[str]
) -> dict[str, tuple[Interval, ...]]:
    counts = TrackCounts(
        traffic.requests[:, track], traffic.errors[:, track], traffic.latency[:, track]
    )
    return track_intervals(names, counts, run_index)


def _observation(
    plan: Plan, tracks: list[dict[str, tuple[Interval, ...]]], k: int
) -> StepObservation:
    from judge_eval.traffic import SERVICE_BOUNDS

    canary, baseline = tracks
    return StepObservation(
        bounds=SERVICE_BOUNDS,
        interval_seconds=plan.interval_seconds,
        canary=TrackSeries({t: ivs[:k] for t, ivs in canary.items()}),
        baseline=TrackSeries({t: ivs[:k] for t, ivs in baseline.items()}),
    )


def wilson(successes: int, runs: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a proportion."""
    if runs == 0:
        return (math.nan, math.nan)
    rate = successes / runs
    centre = rate + z * z / (2 * runs)
    spread = z * math.sqrt(rate * (1 - rate) / runs + z * z / (4 * runs * runs))
    denominator = 1 + z * z / runs
    return (max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator))


__all__ = ["HEALTHY", "Effect", "Outcomes", "Plan", "World", "run", "wilson"]
