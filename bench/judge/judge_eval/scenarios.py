"""What changes in the canary: the issue's scenarios, as data.

A scenario affects either every tenant, one tenant drawn uniformly per run (any tenant is as
likely to break as any other), one tenant of a fixed traffic rank, or a low-traffic tenant
(whose rate is set below 1 req/s; the other tenants keep their relative shares).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from judge_eval.traffic import FloatArray, IntArray, TrackEffect, TrafficModel

BoolArray = npt.NDArray[np.bool_]
Target = Literal["all", "random_tenant", "rank", "low_traffic_tenant"]


@dataclass(frozen=True)
class Scenario:
    name: str
    error_delta: float = 0.0  # added to the affected tenants' 5xx ratio (absolute)
    error_ratio: float | None = None  # or: the affected tenants' 5xx ratio, absolute
    p99_factor: float = 1.0  # the affected tenants' p99 multiplier
    tail_only: bool = False  # p99 through a wider tail (median fixed) instead of a scale shift
    target: Target = "all"
    rank: int = 1  # for target == "rank": 1 is the busiest tenant
    low_traffic_rate: float = 0.5  # req/s through the gateway, for target == "low_traffic_tenant"

    @property
    def is_regression(self) -> bool:
        return self.error_delta > 0 or self.error_ratio is not None or self.p99_factor != 1.0


AA = Scenario("A/A")

STANDARD: tuple[Scenario, ...] = (
    AA,
    Scenario("+0.5pp 5xx", error_delta=0.005),
    Scenario("+1pp 5xx", error_delta=0.01),
    Scenario("+5pp 5xx", error_delta=0.05),
    Scenario("p99 +10% (scale)", p99_factor=1.10),
    Scenario("p99 +25% (scale)", p99_factor=1.25),
    Scenario("p99 +50% (scale)", p99_factor=1.50),
    Scenario("p99 +10% (tail)", p99_factor=1.10, tail_only=True),
    Scenario("p99 +25% (tail)", p99_factor=1.25, tail_only=True),
    Scenario("p99 +50% (tail)", p99_factor=1.50, tail_only=True),
    Scenario("1 of 20 tenants at 5% 5xx", error_ratio=0.05, target="random_tenant"),
    Scenario("low-traffic tenant at 5% 5xx", error_ratio=0.05, target="low_traffic_tenant"),
    Scenario("low-traffic tenant at 100% 5xx", error_ratio=1.0, target="low_traffic_tenant"),
)


def tenant_shares(model: TrafficModel, scenario: Scenario) -> FloatArray:
    shares = model.tenant_shares()
    if scenario.target != "low_traffic_tenant":
        return shares
    low = min(scenario.low_traffic_rate / model.rate, 0.5)
    # The smallest tenant becomes the low-traffic one; the others keep their proportions.
    rest = shares[:-1] / shares[:-1].sum() * (1.0 - low)
    return np.concatenate([rest, [low]])


def affected_tenants(
    model: TrafficModel, scenario: Scenario, runs: int, rng: np.random.Generator
) -> BoolArray:
    """runs x tenants: which tenants the regression touches in each run."""
    mask = np.zeros((runs, model.tenants), dtype=bool)
    if not scenario.is_regression:
        return mask
    if scenario.target == "all":
        mask[:] = True
    elif scenario.target == "random_tenant":
        mask[np.arange(runs), rng.integers(0, model.tenants, size=runs)] = True
    elif scenario.target == "rank":
        if not 1 <= scenario.rank <= model.tenants:
            raise ValueError(f"rank must be in [1, {model.tenants}], got {scenario.rank}")
        mask[:, scenario.rank - 1] = True
    else:
        mask[:, -1] = True
    return mask


def track_effects(
    model: TrafficModel, scenario: Scenario, affected: BoolArray
) -> tuple[TrackEffect, TrackEffect]:
    """(canary, baseline) effects for every run and tenant."""
    runs = affected.shape[0]
    base_errors = np.full(affected.shape, model.error_ratio)
    if scenario.error_ratio is not None:
        bad_errors = np.full(affected.shape, scenario.error_ratio)
    else:
        bad_errors = np.minimum(1.0, base_errors + scenario.error_delta)
    canary_errors = np.where(affected, bad_errors, base_errors)
    models = (
        model.latency,
        model.latency.slower(scenario.p99_factor, tail_only=scenario.tail_only),
    )
    canary_latency: IntArray = np.where(affected, 1, 0).astype(np.int64)
    baseline_latency: IntArray = np.zeros((runs, model.tenants), dtype=np.int64)
    return (
        TrackEffect(canary_errors, canary_latency, models),
        TrackEffect(base_errors, baseline_latency, models),
    )
