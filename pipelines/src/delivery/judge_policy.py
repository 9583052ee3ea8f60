"""The judge's policy: which metrics to compare, how strictly, and how to score them.

Everything here is configuration with safe defaults. `JudgePolicy.from_mapping` parses the
`judge:` section of `environments/delivery.<env>.yaml` and rejects anything it does not know, so a
typo never silently falls back to a default. The defaults follow from the evaluation in
docs/judge.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, get_args

MetricKind = Literal["error_ratio", "latency", "latency_tail", "request_rate"]
Direction = Literal["increase", "decrease", "either"]
# "dispersed": the count test with an interval-level overdispersion correction (ADR 100);
# "exact": the same test without the correction; "mwu_intervals": Kayenta's per-interval ranks;
# "robust" (error_ratio only): each track's worst intervals trimmed, then the count test with the
# overdispersion measured between the judge's intervals on the rest (ADR 150).
ErrorTest = Literal["dispersed", "exact", "mwu_intervals", "robust"]
Correction = Literal["holm", "bonferroni", "bh", "none"]

METRIC_KINDS: tuple[str, ...] = get_args(MetricKind)
DIRECTIONS: tuple[str, ...] = get_args(Direction)
ERROR_TESTS: tuple[str, ...] = get_args(ErrorTest)
CORRECTIONS: tuple[str, ...] = get_args(Correction)


class PolicyError(ValueError):
    """The judge policy is malformed; the message names the offending key."""


@dataclass(frozen=True)
class MetricPolicy:
    """One compared metric.

    tolerance is the effect size that is still acceptable, in the metric's effect unit:
    absolute ratio difference for error_ratio (0.0 = zero-error policy), relative change for
    the latency kinds and request_rate (0.05 = 5%). A metric fails only when the change in the
    bad direction is both significant and larger than the tolerance (Kayenta's allowedIncrease
    is 1 + tolerance for the relative kinds).
    min_effect is the smallest harmful effect: the metric passes only once the data could have
    seen it (power >= JudgePolicy.power at the final look's alpha). None: no power requirement.
    critical_effect (critical metrics only) is Kayenta's criticalIncrease: a failure whose effect
    reaches it fails the whole verdict with score 0; a smaller failure only lowers the score.
    None: every failure of a critical metric is critical (Kayenta's default of 1x).
    test: the test of error_ratio and latency_tail counts, and of latency ("dispersed" corrects
    every kind for overdispersion between intervals; "exact" does not).
    """

    name: str
    kind: MetricKind
    direction: Direction = "increase"
    tolerance: float = 0.0
    critical: bool = False
    weight: float = 1.0
    per_tenant: bool = False
    quantile: float = 0.5  # latency: the quantile the effect is reported on; tail: the tail
    test: ErrorTest = "exact"  # prod, staging and dev ask for "dispersed" (ADR 100)
    min_effect: float | None = None
    critical_effect: float | None = None

    def __post_init__(self) -> None:
        where = f"metric {self.name!r}"
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise PolicyError(f"metric name {self.name!r} must be non-empty [A-Za-z0-9_-]")
        _check_choice(f"{where}: kind", self.kind, METRIC_KINDS)
        _check_choice(f"{where}: direction", self.direction, DIRECTIONS)
        _check_choice(f"{where}: test", self.test, ERROR_TESTS)
        _check_range(f"{where}: tolerance", self.tolerance, 0.0, 10.0)
        _check_range(f"{where}: weight", self.weight, 0.0, 1000.0)
        _check_range(f"{where}: quantile", self.quantile, 0.01, 0.999)
        if self.test in ("mwu_intervals", "robust") and self.kind != "error_ratio":
            raise PolicyError(f"{where}: test {self.test} is for error_ratio only")
        if self.min_effect is not None:
            _check_range(f"{where}: min_effect", self.min_effect, 1e-6, 10.0)
            if self.min_effect <= self.tolerance:
                raise PolicyError(
                    f"{where}: min_effect ({self.min_effect}) must exceed the tolerance "
                    f"({self.tolerance}): it is the smallest effect that is harmful"
                )
            if self.kind != "error_ratio":
                raise PolicyError(f"{where}: min_effect is supported for error_ratio only")
        if self.critical_effect is not None:
            _check_range(f"{where}: critical_effect", self.critical_effect, 0.0, 10.0)
            if not self.critical:
                raise PolicyError(f"{where}: critical_effect needs critical: true (as in Kayenta)")
            if self.critical_effect < self.tolerance:
                raise PolicyError(f"{where}: critical_effect must be >= the tolerance")


def default_metrics() -> tuple[MetricPolicy, ...]:
    return (
        MetricPolicy(
            name="error_ratio",
            kind="error_ratio",
            direction="increase",
            tolerance=0.0,
            critical=True,
            per_tenant=True,
            min_effect=0.05,
        ),
        MetricPolicy(
            name="latency",
            kind="latency",
            direction="increase",
            tolerance=0.05,
            per_tenant=True,
            quantile=0.5,
        ),
        MetricPolicy(
            name="latency_p99",
            kind="latency_tail",
            direction="increase",
            tolerance=0.05,
            quantile=0.99,
        ),
    )


@dataclass(frozen=True)
class JudgePolicy:
    """How one step's canary is judged against its baseline.

    confidence: 1 - the false-abort budget of one whole delivery, spent (Bonferroni, ADR 101)
        across every step, interim look, final look and extension look, every metric plus the
        data checks, and every scope (aggregate and tenants).
    min_requests: the minimum-sample guard, per track over the window; fewer means
        "inconclusive" (the pipeline extends the bake up to its limit, then fails).
    min_tenant_requests: per-track minimum for a tenant's rank tests; the exact count test
        needs no guard because untestable tenants drop out of the correction (Tarone).
    correction: multiple-comparison control across scopes within a metric ("none" exists only
        to measure what the correction buys; docs/judge.md shows the false fails it causes).
    pass_score: the score (0-100, the weight share of the tested metrics that passed) a pass
        needs; below it the verdict fails. There is no marginal band (ADR 102).
    interim_looks: interim looks per step, spread over the bake by `look_schedule`; they may
        fail a canary early on clear harm but never pass it.
    interim_alpha_share: the share of the budget spent on interim looks.
    power: the power the data must have to see each metric's min_effect before it may pass.
    split_tolerance: how far the canary's request count may fall short of (or exceed) the
        baseline's, relatively, per scope, before a significant gap fails the verdict.
    dispersion_block_seconds: the block length the overdispersion is measured on.
    steps, max_extensions: the delivery's shape the budget is spread over; the pipeline sets
        them from the canary section (`for_delivery`), they are not policy keys.
    aggregate_alpha_share: for per-tenant metrics, None corrects the aggregate and the tenants
        as one family; a share s gives the aggregate s of the metric's alpha on its own and the
        tenants the rest (docs/judge.md measures both).
    """

    confidence: float = 0.99
    metrics: tuple[MetricPolicy, ...] = field(default_factory=default_metrics)
    min_requests: int = 200
    min_tenant_requests: int = 20
    correction: Correction = "holm"
    pass_score: float = 95.0
    interim_looks: int = 9
    interim_alpha_share: float = 0.25
    aggregate_alpha_share: float | None = 0.5
    power: float = 0.9
    split_tolerance: float = 0.2
    dispersion_block_seconds: float = 60.0
    steps: int = 1
    max_extensions: int = 0

    def __post_init__(self) -> None:
        _check_range("confidence", self.confidence, 0.5, 0.999999)
        if not self.metrics:
            raise PolicyError("metrics: at least one metric is required")
        names = [m.name for m in self.metrics]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise PolicyError(f"metrics: duplicate names {duplicates}")
        _check_int("min_requests", self.min_requests, 0, 10**9)
        _check_int("min_tenant_requests", self.min_tenant_requests, 2, 10**9)
        _check_choice("correction", self.correction, CORRECTIONS)
        _check_range("pass_score", self.pass_score, 0.0, 100.0)
        _check_int("interim_looks", self.interim_looks, 0, 10_000)
        _check_range("interim_alpha_share", self.interim_alpha_share, 0.0, 0.9)
        if self.aggregate_alpha_share is not None:
            _check_range("aggregate_alpha_share", self.aggregate_alpha_share, 0.05, 0.95)
        _check_range("power", self.power, 0.5, 0.999)
        _check_range("split_tolerance", self.split_tolerance, 0.01, 0.9)
        _check_range("dispersion_block_seconds", self.dispersion_block_seconds, 0.0, 3600.0)
        _check_int("steps", self.steps, 1, 100)
        _check_int("max_extensions", self.max_extensions, 0, 100)

    @property
    def alpha(self) -> float:
        return 1.0 - self.confidence

    def for_delivery(self, *, steps: int, max_extensions: int) -> JudgePolicy:
        """This policy with the budget spread over a delivery of this shape."""
        return replace(self, steps=steps, max_extensions=max_extensions)

    def look_alpha(self, *, interim: bool) -> float:
        """The alpha one look may spend, by the declared rule (ADR 101): Bonferroni over every
        look the delivery may take. Each step gets 1/steps of the budget; of that, interim
        looks share `interim_alpha_share` evenly, and the final look plus each extension's look
        share the rest evenly. It holds whatever the looks' timing and correlation."""
        per_step = self.alpha / self.steps
        if interim:
            if self.interim_looks == 0:
                return 0.0
            return per_step * self.interim_alpha_share / self.interim_looks
        share = self.interim_alpha_share if self.interim_looks else 0.0
        return per_step * (1.0 - share) / (1 + self.max_extensions)

    def planned_alpha(self) -> float:
        """The whole delivery's spend if every look is taken: never above 1 - confidence."""
        return self.steps * (
            self.interim_looks * self.look_alpha(interim=True)
            + (1 + self.max_extensions) * self.look_alpha(interim=False)
        )

    def with_overrides(self, **changes: Any) -> JudgePolicy:
        return replace(self, **changes)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> JudgePolicy:
        """Parse the `judge:` section of a delivery config; unknown keys are errors."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise PolicyError(f"judge policy must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)} - {"steps", "max_extensions"}
        _reject_unknown("judge", data, known)
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "metrics":
                kwargs[key] = _parse_metrics(value)
            elif key in ("min_requests", "min_tenant_requests", "interim_looks"):
                kwargs[key] = _as_int(f"judge.{key}", value)
            elif key == "aggregate_alpha_share" and value is None:
                kwargs[key] = None
            elif key == "correction":
                kwargs[key] = _as_str(f"judge.{key}", value)
            else:
                kwargs[key] = _as_float(f"judge.{key}", value)
        return cls(**kwargs)


def _parse_metrics(value: Any) -> tuple[MetricPolicy, ...]:
    if not isinstance(value, list | tuple):
        raise PolicyError(f"judge.metrics must be a list, got {type(value).__name__}")
    known = {f.name for f in fields(MetricPolicy)}
    parsed: list[MetricPolicy] = []
    for index, item in enumerate(value):
        where = f"judge.metrics[{index}]"
        if not isinstance(item, Mapping):
            raise PolicyError(f"{where} must be a mapping, got {type(item).__name__}")
        _reject_unknown(where, item, known)
        for required in ("name", "kind"):
            if required not in item:
                raise PolicyError(f"{where}: missing required key {required!r}")
        kwargs: dict[str, Any] = {}
        for key, raw in item.items():
            if key in ("min_effect", "critical_effect") and raw is None:
                kwargs[key] = None
            elif key in ("tolerance", "weight", "quantile", "min_effect", "critical_effect"):
                kwargs[key] = _as_float(f"{where}.{key}", raw)
            elif key in ("critical", "per_tenant"):
                if not isinstance(raw, bool):
                    raise PolicyError(f"{where}.{key} must be true or false, got {raw!r}")
                kwargs[key] = raw
            else:
                kwargs[key] = _as_str(f"{where}.{key}", raw)
        try:
            parsed.append(MetricPolicy(**kwargs))
        except PolicyError as exc:
            raise PolicyError(f"{where}: {exc}") from None
    return tuple(parsed)


def _reject_unknown(where: str, data: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise PolicyError(f"{where}: unknown keys {unknown}; known keys are {sorted(known)}")


def _as_float(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{where} must be a number, got {value!r}")
    return float(value)


def _as_int(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{where} must be an integer, got {value!r}")
    return value


def _as_str(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise PolicyError(f"{where} must be a string, got {value!r}")
    return value


def _check_choice(where: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise PolicyError(f"{where} must be one of {list(choices)}, got {value!r}")


def _check_range(where: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PolicyError(f"{where} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise PolicyError(f"{where} must be within [{low}, {high}], got {value!r}")


def _check_int(where: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{where} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise PolicyError(f"{where} must be within [{low}, {high}], got {value}")


def look_schedule(bake_seconds: float, interval_seconds: float, looks: int) -> tuple[float, ...]:
    """When a step's interim looks fall, in seconds into the bake: evenly over the whole bake
    (look j of L at j / (L + 1) of it), each on an interval boundary and after at least two
    intervals, all before the bake ends; looks that would coincide are merged. Pure."""
    if bake_seconds <= 0 or interval_seconds <= 0 or looks <= 0:
        return ()
    times: list[float] = []
    for j in range(1, looks + 1):
        at = bake_seconds * j / (looks + 1)
        at = max(2.0, math.ceil(at / interval_seconds - 1e-9)) * interval_seconds
        if at < bake_seconds and (not times or at > times[-1]):
            times.append(at)
    return tuple(times)
