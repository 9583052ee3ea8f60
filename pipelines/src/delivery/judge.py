"""The canary judge: one step's canary against its fresh baseline, as a verdict with evidence.

    verdict = judge(observation, policy)                # at the end of a step's bake
    verdict = judge(observation, policy, interim=True)  # during the bake: may only fail early

Per metric: a test in the bad direction (Fisher's exact test on error counts, Mann-Whitney U on
latency buckets, an exact tail-exceedance test, Mann-Whitney U on per-interval request counts),
an effect size with its confidence interval, and a tolerance. A metric fails when the change is
both significant after the multiple-comparison correction and larger than the tolerance. Scopes
are the aggregate plus, for per-tenant metrics, every tenant; the correction (Holm by default,
after Tarone's rule drops tenants too small to ever be significant) runs across the scopes of a
metric, and the look's alpha is split evenly across metrics, so the whole verdict stays within
1 - confidence. Critical metrics fail the verdict on their own, and so does their missing data.
The rest is a Kayenta-style score. docs/judge.md has the method and its measured quality.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from delivery.judge_policy import JudgePolicy, MetricPolicy, PolicyError
from delivery.judge_stats import (
    Alternative,
    BoolArray,
    FloatArray,
    adjust_p_values,
    fisher_exact,
    histogram_quantile,
    mann_whitney_from_counts,
    quantile_interval,
    rate_ratio_interval,
    ratio_difference_interval,
    tarone_testable,
)
from delivery.judge_verdict import (
    AGGREGATE,
    EvidenceRow,
    MetricResult,
    MetricStatus,
    Outcome,
    RowResult,
    Verdict,
    format_effect,
)
from delivery.observation import Interval, StepObservation, TrackSeries

__all__ = [
    "EvidenceRow",
    "JudgePolicy",
    "MetricPolicy",
    "ObservationError",
    "PolicyError",
    "Verdict",
    "judge",
]


class ObservationError(ValueError):
    """The observation is malformed (not merely empty: empty data is judged, as missing)."""


@dataclass(frozen=True)
class _Track:
    """One track as arrays, tenants aligned with the union of both tracks' tenants."""

    requests: FloatArray  # tenants x intervals
    errors: FloatArray  # tenants x intervals
    latency: FloatArray  # tenants x buckets (summed over intervals)
    has_latency: bool


@dataclass(frozen=True)
class _Scopes:
    """Per-scope statistics of one metric before the correction; index 0 is the aggregate."""

    names: list[str]
    canary_n: FloatArray
    canary_value: FloatArray
    baseline_n: FloatArray
    baseline_value: FloatArray
    effect: FloatArray
    low: FloatArray
    high: FloatArray
    p: FloatArray
    p_min: FloatArray
    eligible: BoolArray  # bool: enough data for this scope's test
    unit: str
    effect_unit: str
    note: list[str]


def judge(observation: StepObservation, policy: JudgePolicy, *, interim: bool = False) -> Verdict:
    """Judge one step. Pure: same observation and policy, same verdict."""
    bounds = _validated_bounds(observation)
    tenants = sorted(set(observation.canary.tenants) | set(observation.baseline.tenants))
    canary = _arrays(observation.canary, tenants, bounds.size, "canary")
    baseline = _arrays(observation.baseline, tenants, bounds.size, "baseline")
    look_alpha = policy.look_alpha(interim=interim)
    metric_alpha = look_alpha / len(policy.metrics)

    evidence: list[EvidenceRow] = []
    results: list[MetricResult] = []
    reasons: list[str] = []
    for metric in policy.metrics:
        status, rows, why = _judge_metric(
            metric, policy, tenants, bounds, canary, baseline, metric_alpha
        )
        evidence.extend(rows)
        results.append(MetricResult(metric.name, status, metric.critical, metric.weight))
        reasons.extend(why)

    outcome, score, summary = _decide(policy, results, canary, baseline, interim)
    return Verdict(
        outcome=outcome,
        score=score,
        reasons=tuple(summary + reasons),
        evidence=tuple(evidence),
        metrics=tuple(results),
        interim=interim,
        alpha=look_alpha,
    )


def _decide(
    policy: JudgePolicy,
    results: list[MetricResult],
    canary: _Track,
    baseline: _Track,
    interim: bool,
) -> tuple[Outcome, float | None, list[str]]:
    scored = [r for r in results if r.status in ("pass", "fail")]
    total_weight = sum(r.weight for r in scored)
    score = (
        100.0 * sum(r.weight for r in scored if r.status == "pass") / total_weight
        if total_weight > 0
        else None
    )
    critical_missing = [r.name for r in results if r.critical and r.status == "missing"]
    critical_failed = [r.name for r in results if r.critical and r.status == "fail"]
    if critical_missing:
        return "fail", score, [f"critical metric(s) without data: {', '.join(critical_missing)}"]
    if critical_failed:
        return "fail", score, [f"critical metric(s) failed: {', '.join(critical_failed)}"]
    if score is not None and score < policy.marginal_score:
        failed = ", ".join(r.name for r in results if r.status == "fail")
        return "fail", score, [f"score {score:.1f} < marginal {policy.marginal_score:g} ({failed})"]
    n_c, n_b = float(canary.requests.sum()), float(baseline.requests.sum())
    if min(n_c, n_b) < policy.min_requests:
        return (
            "inconclusive",
            score,
            [
                f"too few requests: canary {n_c:.0f}, baseline {n_b:.0f} "
                f"(guard: {policy.min_requests} per track); extend the bake"
            ],
        )
    if score is None:
        return "inconclusive", score, ["no metric had data to score"]
    if interim:
        return "inconclusive", score, ["interim look: no failure so far; the bake continues"]
    if score < policy.pass_score:
        return (
            "inconclusive",
            score,
            [
                f"score {score:.1f} is marginal (pass >= {policy.pass_score:g}, "
                f"fail < {policy.marginal_score:g}); extend the bake"
            ],
        )
    return "pass", score, [f"score {score:.1f} >= {policy.pass_score:g}: no significant regression"]


def _judge_metric(
    metric: MetricPolicy,
    policy: JudgePolicy,
    tenants: list[str],
    bounds: FloatArray,
    canary: _Track,
    baseline: _Track,
    alpha: float,
) -> tuple[MetricStatus, list[EvidenceRow], list[str]]:
    per_tenant = metric.per_tenant and bool(tenants)
    if metric.kind in ("latency", "latency_tail") and not (
        canary.has_latency and baseline.has_latency
    ):
        row = _missing_row(metric, "no latency histogram on one or both tracks", alpha)
        return "missing", [row], [_missing_reason(metric, row.note)]
    scopes = _scopes(metric, policy, tenants, bounds, canary, baseline, per_tenant)
    if scopes.canary_n[0] <= 0 or scopes.baseline_n[0] <= 0:
        note = f"no data: canary n={scopes.canary_n[0]:.0f}, baseline n={scopes.baseline_n[0]:.0f}"
        row = _missing_row(metric, note, alpha)
        return "missing", [row], [_missing_reason(metric, note)]

    eligible = scopes.eligible.copy()
    testable = eligible.copy()
    adjusted = np.full(len(scopes.names), np.nan)
    levels = np.full(len(scopes.names), alpha)
    share = policy.aggregate_alpha_share
    if share is not None and len(scopes.names) > 1:
        # Two families (Bonferroni between them): the aggregate alone, and the tenants.
        levels[0], levels[1:] = alpha * share, alpha * (1.0 - share)
        families = [np.arange(1), np.arange(1, len(scopes.names))]
    else:
        families = [np.arange(len(scopes.names))]
    for family in families:
        members = family[eligible[family]]
        level = float(levels[family[0]])
        if policy.correction != "none":
            testable[members] = tarone_testable(scopes.p_min[members], level)
        members = members[testable[members]]
        adjusted[members] = adjust_p_values(scopes.p[members], policy.correction)

    bad = _bad_effect(metric, scopes.effect)
    failed = testable & (adjusted <= levels) & bad
    rows: list[EvidenceRow] = []
    reasons: list[str] = []
    for i, scope in enumerate(scopes.names):
        result: RowResult
        note = scopes.note[i]
        if failed[i]:
            result = "fail"
        elif not eligible[i]:
            result = "insufficient"
        else:
            result = "pass"
            if not testable[i]:
                note = note or "too few events to ever be significant"
        row = EvidenceRow(
            metric=metric.name,
            scope=scope,
            canary_n=float(scopes.canary_n[i]),
            canary_value=_opt(scopes.canary_value[i]),
            baseline_n=float(scopes.baseline_n[i]),
            baseline_value=_opt(scopes.baseline_value[i]),
            effect=_opt(scopes.effect[i]),
            interval=_opt_pair(scopes.low[i], scopes.high[i]),
            p_value=_opt(scopes.p[i]) if eligible[i] else None,
            p_adjusted=_opt(adjusted[i]),
            alpha=float(levels[i]),
            result=result,
            unit=scopes.unit,
            effect_unit=scopes.effect_unit,
            note=note,
        )
        rows.append(row)
        if result == "fail":
            reasons.append(_fail_reason(metric, row, policy.correction))

    status: MetricStatus
    if failed.any():
        status = "fail"
    elif min(scopes.canary_n[0], scopes.baseline_n[0]) < policy.min_requests:
        status = "insufficient"
    else:
        status = "pass"
    return status, rows, reasons


def _scopes(
    metric: MetricPolicy,
    policy: JudgePolicy,
    tenants: list[str],
    bounds: FloatArray,
    canary: _Track,
    baseline: _Track,
    per_tenant: bool,
) -> _Scopes:
    names = [AGGREGATE, *tenants] if per_tenant else [AGGREGATE]

    def stack(per_tenant_values: FloatArray) -> FloatArray:
        aggregate = per_tenant_values.sum(axis=0, keepdims=True)
        return np.concatenate([aggregate, per_tenant_values]) if per_tenant else aggregate

    alternative = _alternative(metric)
    confidence = policy.confidence
    if metric.kind == "error_ratio":
        n_c = stack(canary.requests.sum(axis=1))
        n_b = stack(baseline.requests.sum(axis=1))
        e_c = stack(canary.errors.sum(axis=1))
        e_b = stack(baseline.errors.sum(axis=1))
        with np.errstate(divide="ignore", invalid="ignore"):
            v_c = np.where(n_c > 0, e_c / n_c, np.nan)
            v_b = np.where(n_b > 0, e_b / n_b, np.nan)
        low, high = ratio_difference_interval(e_c, n_c, e_b, n_b, confidence)
        if metric.test == "exact":
            p, p_min = fisher_exact(e_c, n_c, e_b, n_b, alternative)
            eligible = (n_c > 0) & (n_b > 0)
        else:
            p, p_min, eligible = _interval_mwu_ratios(canary, baseline, per_tenant, alternative)
        return _Scopes(
            names, n_c, v_c, n_b, v_b, v_c - v_b, low, high, p, p_min, eligible,
            "ratio", "pp", [""] * len(names),
        )  # fmt: skip
    if metric.kind == "request_rate":
        per_interval_c = _interval_matrix(canary.requests, per_tenant)
        per_interval_b = _interval_matrix(baseline.requests, per_tenant)
        n_c = per_interval_c.sum(axis=1)
        n_b = per_interval_b.sum(axis=1)
        k_c, k_b = per_interval_c.shape[1], per_interval_b.shape[1]
        v_c = n_c / max(k_c, 1)
        v_b = n_b / max(k_b, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            effect = np.where(v_b > 0, v_c / v_b - 1.0, np.nan)
        low, high = rate_ratio_interval(n_c * k_b / max(k_c, 1), n_b, confidence)
        p = np.ones(len(names))
        eligible = np.full(len(names), k_c >= 3 and k_b >= 3)
        if k_c >= 3 and k_b >= 3:
            p = np.asarray(
                stats.mannwhitneyu(
                    per_interval_c, per_interval_b, alternative=alternative, axis=1
                ).pvalue,
                dtype=np.float64,
            )
            p = np.nan_to_num(p, nan=1.0)
        p_min = np.zeros(len(names))
        return _Scopes(
            names, n_c, v_c, n_b, v_b, effect, low, high, p, p_min, eligible,
            "req/interval", "relative", [""] * len(names),
        )  # fmt: skip
    # latency kinds: bucket counts per scope
    lat_c = stack(canary.latency)
    lat_b = stack(baseline.latency)
    n_c = lat_c.sum(axis=1)
    n_b = lat_b.sum(axis=1)
    q = metric.quantile
    both = np.concatenate([lat_c, lat_b])  # one vectorised call for both tracks
    v_c, v_b = np.split(histogram_quantile(both, bounds, q), 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        effect = np.where(v_b > 0, v_c / v_b - 1.0, np.nan)
    # Each quantile at (1+confidence)/2 so that the ratio interval holds jointly.
    lows, highs = quantile_interval(both, bounds, q, (1.0 + confidence) / 2.0)
    c_low, b_low = np.split(lows, 2)
    c_high, b_high = np.split(highs, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        low = np.where(b_high > 0, c_low / b_high - 1.0, np.nan)
        high = np.where(b_low > 0, c_high / b_low - 1.0, np.nan)
    guard = policy.min_tenant_requests
    notes = [""] * len(names)
    if metric.kind == "latency":
        _, p = mann_whitney_from_counts(lat_c, lat_b, alternative)
        eligible = (n_c >= guard) & (n_b >= guard)
        eligible[0] = n_c[0] > 0 and n_b[0] > 0
        p_min = np.zeros(len(names))
    else:
        exceed_c, exceed_b, edge = _tail_counts(lat_c, lat_b, bounds, q)
        p, p_min = fisher_exact(exceed_c, n_c, exceed_b, n_b, alternative)
        eligible = (n_c > 0) & (n_b > 0)
        notes = [f"> {1000.0 * e:g}ms" if np.isfinite(e) else "" for e in edge]
    return _Scopes(
        names, n_c, v_c, n_b, v_b, effect, low, high, p, p_min, eligible,
        "seconds", "relative", notes,
    )  # fmt: skip


def _tail_counts(
    lat_c: FloatArray, lat_b: FloatArray, bounds: FloatArray, q: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Requests above the bucket edge just below the baseline's q-quantile, per track.

    The edge comes from the baseline only, so the canary's tail is compared with the
    baseline's on the same cut. Taking the edge below the quantile keeps at least a share
    1 - q of the baseline above it, which is what gives the exact test its power.
    """
    total_b = lat_b.sum(axis=1)
    cum_b = np.cumsum(lat_b, axis=1)
    index = np.argmax(cum_b >= (q * total_b)[:, None], axis=1)  # bucket holding the quantile
    index = np.clip(index, 1, bounds.size)  # edge = upper bound of bucket index-1
    above = np.arange(lat_b.shape[1])[None, :] >= index[:, None]
    exceed_c = (lat_c * above).sum(axis=1)
    exceed_b = (lat_b * above).sum(axis=1)
    edge = bounds[index - 1]
    return exceed_c, exceed_b, np.where(total_b > 0, edge, np.nan)


def _interval_matrix(values: FloatArray, per_tenant: bool) -> FloatArray:
    aggregate = values.sum(axis=0, keepdims=True)
    return np.concatenate([aggregate, values]) if per_tenant else aggregate


def _interval_mwu_ratios(
    canary: _Track, baseline: _Track, per_tenant: bool, alternative: Alternative
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Kayenta's way: Mann-Whitney U on per-interval error ratios (kept for comparison)."""
    req_c = _interval_matrix(canary.requests, per_tenant)
    req_b = _interval_matrix(baseline.requests, per_tenant)
    err_c = _interval_matrix(canary.errors, per_tenant)
    err_b = _interval_matrix(baseline.errors, per_tenant)
    p = np.ones(req_c.shape[0])
    eligible = np.zeros(req_c.shape[0], dtype=bool)
    for i in range(req_c.shape[0]):
        keep_c = req_c[i] > 0
        keep_b = req_b[i] > 0
        if keep_c.sum() < 3 or keep_b.sum() < 3:
            continue
        eligible[i] = True
        ratios_c = err_c[i][keep_c] / req_c[i][keep_c]
        ratios_b = err_b[i][keep_b] / req_b[i][keep_b]
        if np.ptp(np.concatenate([ratios_c, ratios_b])) == 0:
            continue  # all equal (typically all zero): nothing to rank
        p[i] = float(stats.mannwhitneyu(ratios_c, ratios_b, alternative=alternative).pvalue)
    return p, np.zeros(req_c.shape[0]), eligible


def _alternative(metric: MetricPolicy) -> Alternative:
    if metric.direction == "increase":
        return "greater"
    if metric.direction == "decrease":
        return "less"
    return "two-sided"


def _bad_effect(metric: MetricPolicy, effect: FloatArray) -> BoolArray:
    e = np.nan_to_num(effect, nan=0.0)
    if metric.direction == "increase":
        return np.asarray(e > metric.tolerance)
    if metric.direction == "decrease":
        return np.asarray(e < -metric.tolerance)
    return np.asarray(np.abs(e) > metric.tolerance)


def _fail_reason(metric: MetricPolicy, row: EvidenceRow, correction: str) -> str:
    tolerance = format_effect(metric.tolerance, row.effect_unit).lstrip("+")
    critical = " (critical)" if metric.critical else ""
    return (
        f"{metric.name}{critical} [{row.scope}]: effect "
        f"{format_effect(row.effect, row.effect_unit)} beyond tolerance {tolerance}, "
        f"p={row.p_value:.2g} ({correction}-adjusted {row.p_adjusted:.2g} <= {row.alpha:.2g}); "
        f"canary n={row.canary_n:.0f}, baseline n={row.baseline_n:.0f}"
    )


def _missing_row(metric: MetricPolicy, note: str, alpha: float) -> EvidenceRow:
    return EvidenceRow(
        metric=metric.name,
        scope=AGGREGATE,
        canary_n=0.0,
        canary_value=None,
        baseline_n=0.0,
        baseline_value=None,
        effect=None,
        interval=None,
        p_value=None,
        p_adjusted=None,
        alpha=alpha,
        result="missing",
        unit="ratio" if metric.kind == "error_ratio" else "seconds",
        effect_unit="pp" if metric.kind == "error_ratio" else "relative",
        note=note,
    )


def _missing_reason(metric: MetricPolicy, note: str) -> str:
    consequence = "fails the verdict" if metric.critical else "is left out of the score"
    return f"{metric.name}: {note}; a {'critical ' if metric.critical else ''}metric {consequence}"


def _opt(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _opt_pair(low: float, high: float) -> tuple[float, float] | None:
    if np.isfinite(low) and np.isfinite(high):
        return (float(low), float(high))
    return None


def _validated_bounds(observation: StepObservation) -> FloatArray:
    bounds = np.asarray(observation.bounds, dtype=np.float64)
    if bounds.ndim != 1 or bounds.size == 0:
        raise ObservationError("bounds: at least one finite latency bucket bound is required")
    if not np.all(np.isfinite(bounds)) or np.any(bounds <= 0):
        raise ObservationError(f"bounds must be finite and positive, got {observation.bounds}")
    if np.any(np.diff(bounds) <= 0):
        raise ObservationError(f"bounds must be strictly ascending, got {observation.bounds}")
    if not observation.interval_seconds > 0:
        raise ObservationError(
            f"interval_seconds must be positive, got {observation.interval_seconds}"
        )
    return bounds


def _arrays(series: TrackSeries, tenants: list[str], n_bounds: int, track: str) -> _Track:
    width = n_bounds + 1
    lengths = {len(intervals) for intervals in series.tenants.values()}
    k = max(lengths, default=0)
    requests = np.zeros((len(tenants), k))
    errors = np.zeros((len(tenants), k))
    latency = np.zeros((len(tenants), width))
    present = [t for t, tenant in enumerate(tenants) if series.tenants.get(tenant)]
    flat = [iv for tenant in tenants for iv in series.tenants.get(tenant, ())]
    widths = {len(iv.latency_counts) for iv in flat}
    if widths - {0, width}:
        raise ObservationError(
            f"{track}: latency_counts must have len(bounds) + 1 = {width} entries "
            f"(the last is +Inf), or none; got lengths {sorted(widths)}"
        )
    has_latency = width in widths
    if lengths == {k} and len(present) == len(tenants) and widths == {width}:
        # The usual shape, every tenant on every interval with a histogram: one array each.
        requests = np.fromiter((iv.requests for iv in flat), np.float64, len(flat))
        errors = np.fromiter((iv.errors for iv in flat), np.float64, len(flat))
        requests = requests.reshape(len(tenants), k)
        errors = errors.reshape(len(tenants), k)
        matrix = np.asarray([iv.latency_counts for iv in flat], dtype=np.float64)
        latency = matrix.reshape(len(tenants), k, width).sum(axis=1)
    else:
        for t in present:
            intervals: tuple[Interval, ...] = series.tenants[tenants[t]]
            # A tenant seen in fewer intervals misses the earliest ones (its first request
            # came later), so its intervals are aligned to the end of the window.
            offset = k - len(intervals)
            requests[t, offset:] = [iv.requests for iv in intervals]
            errors[t, offset:] = [iv.errors for iv in intervals]
            buckets = [iv.latency_counts for iv in intervals if iv.latency_counts]
            if buckets:
                latency[t] = np.asarray(buckets, dtype=np.float64).sum(axis=0)
    for name, values in (("requests", requests), ("errors", errors), ("latency", latency)):
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ObservationError(f"{track}: {name} must be finite and non-negative")
    # increase() extrapolation can put errors a hair above requests; more than that is a bug.
    if np.any(errors > requests * 1.01 + 1.0):
        raise ObservationError(f"{track}: more errors than requests in some interval")
    return _Track(requests, np.minimum(errors, requests), latency, has_latency)
