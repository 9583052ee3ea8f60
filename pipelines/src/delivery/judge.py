"""The canary judge: one step's canary against its fresh baseline, as a verdict with evidence.

    verdict = judge(observation, policy)                # at the end of a step's bake
    verdict = judge(observation, policy, interim=True)  # during the bake: may only fail early
    verdict = judge(observation, policy, at_limit=True) # the last look: no more extensions

Per metric: a one-sided test in the bad direction on counts, corrected for overdispersion
between blocks of intervals (bursty errors, a slow instance for a while: ADR 100), an effect
size with its confidence interval, and a tolerance. A metric fails when the change is both
significant after the multiple-comparison correction and larger than the tolerance. Scopes are
the aggregate plus, for per-tenant metrics, every tenant (Holm after Tarone's rule). The budget
is one delivery's: every look of every step spends a declared share (ADR 101), split evenly
across the metrics and the data checks. Missing data never passes: a tenant or a share of the
traffic the canary does not serve, or a metric the baseline reports and the canary does not,
fails the verdict; too little data for the policy's smallest harmful effect keeps it
inconclusive, with the requests still needed, and at the bake's limit fails it in words.
docs/judge.md has the method and its measured quality.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from delivery.judge_policy import JudgePolicy, MetricPolicy, PolicyError, look_schedule
from delivery.judge_stats import (
    Alternative,
    BoolArray,
    FloatArray,
    adjust_p_values,
    blocks,
    count_dispersion,
    fisher_exact,
    histogram_quantile,
    mann_whitney_from_counts,
    mann_whitney_rows,
    quantile_interval,
    quasi_p_values,
    rank_dispersion,
    rate_ratio_interval,
    ratio_difference_interval,
    requests_for_power,
    robust_count_test,
    shared_dispersion,
    split_p_values,
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
    "look_schedule",
]

NOT_ENOUGH_TRAFFIC = "not enough traffic to judge; add synthetic traffic or lengthen the bake"
TRAFFIC_SPLIT = "traffic_split"


class ObservationError(ValueError):
    """The observation is malformed (not merely empty: empty data is judged, as missing)."""


@dataclass(frozen=True)
class _Track:
    """One track as arrays, tenants aligned with the union of both tracks' tenants."""

    requests: FloatArray  # tenants x intervals
    errors: FloatArray  # tenants x intervals
    latency_intervals: FloatArray  # tenants x intervals x buckets
    has_latency: bool

    @property
    def latency(self) -> FloatArray:  # tenants x buckets
        return np.asarray(self.latency_intervals.sum(axis=1))


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
    dispersion: FloatArray  # the overdispersion the test was corrected for (1: none)


@dataclass(frozen=True)
class _Context:
    """What every metric of one look shares."""

    tenants: list[str]
    bounds: FloatArray
    canary: _Track
    baseline: _Track
    block: int  # intervals per block for the overdispersion of error counts
    latency_block: int  # ... and of latency, never shorter (noise episodes last)
    alpha: float  # this look's alpha per metric
    final_alpha: float  # the final look's alpha per metric (for the power requirement)
    interim: bool


def judge(
    observation: StepObservation,
    policy: JudgePolicy,
    *,
    interim: bool = False,
    at_limit: bool = False,
) -> Verdict:
    """Judge one step. Pure: same observation and policy, same verdict.

    interim: a look during the bake, which may fail on clear harm but never pass.
    at_limit: the step's last look (no extension left): what would stay inconclusive fails,
    saying that there was not enough traffic to judge.
    """
    bounds = _validated_bounds(observation)
    tenants = sorted(set(observation.canary.tenants) | set(observation.baseline.tenants))
    canary = _arrays(observation.canary, tenants, bounds.size, "canary")
    baseline = _arrays(observation.baseline, tenants, bounds.size, "baseline")
    look_alpha = policy.look_alpha(interim=interim)
    families = len(policy.metrics) + 1  # the metrics and the data checks
    k = max(canary.requests.shape[1], baseline.requests.shape[1])
    block = max(1, round(policy.dispersion_block_seconds / observation.interval_seconds))
    ctx = _Context(
        tenants=tenants,
        bounds=bounds,
        canary=canary,
        baseline=baseline,
        block=max(1, min(block, k // 4)),
        # An interim look never shortens latency blocks: a slow spell as long as the window
        # would pass for a regression. The step's final look shortens them to 4 per track.
        latency_block=block if interim else max(1, min(block, k // 4)),
        alpha=look_alpha / families,
        final_alpha=policy.look_alpha(interim=False) / families,
        interim=interim,
    )

    split_rows, split_reasons = _split_check(policy, ctx)
    evidence: list[EvidenceRow] = list(split_rows)
    results: list[MetricResult] = []
    reasons: list[str] = list(split_reasons)
    needed: list[str] = []
    for metric in policy.metrics:
        outcome = _judge_metric(metric, policy, ctx)
        evidence.extend(outcome.rows)
        results.append(MetricResult(metric.name, outcome.status, metric.critical, metric.weight))
        reasons.extend(outcome.reasons)
        needed.extend(outcome.needed)

    decided, score, summary = _decide(
        policy, results, evidence, canary, baseline, interim, bool(split_reasons), needed
    )
    if decided == "inconclusive" and at_limit and not interim:
        decided = "fail"
        summary = [f"{NOT_ENOUGH_TRAFFIC} ({summary[0]})", *summary[1:]]
    return Verdict(
        outcome=decided,
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
    evidence: list[EvidenceRow],
    canary: _Track,
    baseline: _Track,
    interim: bool,
    split_failed: bool,
    needed: list[str],
) -> tuple[Outcome, float | None, list[str]]:
    scored = [r for r in results if r.status in ("pass", "fail")]
    total_weight = sum(r.weight for r in scored)
    score = (
        100.0 * sum(r.weight for r in scored if r.status == "pass") / total_weight
        if total_weight > 0
        else None
    )
    critical = {m.name: m for m in policy.metrics if m.critical}
    critical_failed = [
        r.name
        for r in results
        if r.name in critical
        and r.status == "fail"
        and _is_critical_failure(critical[r.name], evidence)
    ]
    critical_untested = [r.name for r in results if r.name in critical and r.status == "untested"]
    if split_failed:
        return "fail", score, ["the canary is missing traffic the baseline serves (see below)"]
    missing = [
        r.name
        for r in results
        if r.status == "fail"
        and any(row.metric == r.name and row.result == "missing" for row in evidence)
    ]
    if missing:
        return "fail", score, [f"metric(s) the baseline reports and the canary does not: "
                               f"{', '.join(missing)}"]  # fmt: skip
    if critical_failed:
        return "fail", 0.0, [f"critical metric(s) failed: {', '.join(critical_failed)}"]
    if critical_untested:
        return (
            "fail",
            score,
            [f"critical metric(s) without data on both tracks: {', '.join(critical_untested)}"],
        )
    if score is not None and score < policy.pass_score:
        failed = ", ".join(r.name for r in results if r.status == "fail")
        return "fail", score, [f"score {score:.1f} < {policy.pass_score:g} ({failed} failed)"]
    if interim:
        return "inconclusive", score, ["interim look: no failure so far; the bake continues"]
    n_c, n_b = float(canary.requests.sum()), float(baseline.requests.sum())
    if min(n_c, n_b) < policy.min_requests:
        more = policy.min_requests - min(n_c, n_b)
        return (
            "inconclusive",
            score,
            [
                f"inconclusive: about {more:,.0f} more requests needed per track "
                f"(canary {n_c:,.0f}, baseline {n_b:,.0f}; guard {policy.min_requests:,} each)"
            ],
        )
    if needed:
        return "inconclusive", score, [f"inconclusive: {'; '.join(needed)}"]
    if score is None:
        return "inconclusive", score, ["inconclusive: no metric had data on both tracks"]
    return "pass", score, [f"score {score:.1f} >= {policy.pass_score:g}: no significant regression"]


def _is_critical_failure(metric: MetricPolicy, evidence: list[EvidenceRow]) -> bool:
    """Kayenta's criticalIncrease: without it, every failure of a critical metric is critical."""
    if metric.critical_effect is None:
        return True
    return any(
        row.metric == metric.name
        and row.result == "fail"
        and row.effect is not None
        and abs(row.effect) >= metric.critical_effect
        for row in evidence
    )


@dataclass(frozen=True)
class _MetricOutcome:
    status: MetricStatus
    rows: list[EvidenceRow]
    reasons: list[str]
    needed: list[str]  # "about N more requests ..." when the power is not there yet


def _split_check(policy: JudgePolicy, ctx: _Context) -> tuple[list[EvidenceRow], list[str]]:
    """Missing traffic, at every scope: equal weights give the canary and the baseline about
    the same requests, overall and per tenant. A significant gap beyond the tolerance (Bonferroni
    over the scopes) means requests, a tenant or the canary's metrics are missing."""
    names = [AGGREGATE, *ctx.tenants]
    n_c = np.concatenate([[ctx.canary.requests.sum()], ctx.canary.requests.sum(axis=1)])
    n_b = np.concatenate([[ctx.baseline.requests.sum()], ctx.baseline.requests.sum(axis=1)])
    p = split_p_values(n_c, n_b, policy.split_tolerance)
    level = ctx.alpha / len(names)
    rows: list[EvidenceRow] = []
    reasons: list[str] = []
    for i in np.flatnonzero(p <= level):
        scope = names[i]
        ratio = n_c[i] / n_b[i] if n_b[i] > 0 else math.inf
        what = "the canary's traffic" if scope == AGGREGATE else f"tenant {scope}"
        if n_c[i] == 0:
            why = f"{what}: the canary served none of it, the baseline {n_b[i]:,.0f} requests"
        else:
            why = (
                f"{what}: canary {n_c[i]:,.0f} requests, baseline {n_b[i]:,.0f} "
                f"(ratio {ratio:.2f}; equal weights expect 1 within "
                f"{100 * policy.split_tolerance:g}%)"
            )
        reasons.append(f"{TRAFFIC_SPLIT} [{scope}]: {why}; requests or metrics are missing")
        rows.append(
            EvidenceRow(
                metric=TRAFFIC_SPLIT,
                scope=scope,
                canary_n=float(n_c[i]),
                canary_value=None,
                baseline_n=float(n_b[i]),
                baseline_value=None,
                effect=_opt(ratio - 1.0),
                interval=None,
                p_value=float(p[i]),
                p_adjusted=float(min(1.0, p[i] * len(names))),
                alpha=ctx.alpha,
                result="fail",
                unit="requests",
                effect_unit="relative",
                note="tenant missing from the canary" if n_c[i] == 0 else "traffic split",
            )
        )
    return rows, reasons


def _judge_metric(  # noqa: C901  one metric, every verdict branch in the order the docs list them
    metric: MetricPolicy, policy: JudgePolicy, ctx: _Context
) -> _MetricOutcome:
    canary, baseline, alpha = ctx.canary, ctx.baseline, ctx.alpha
    per_tenant = metric.per_tenant and bool(ctx.tenants)
    if metric.kind in ("latency", "latency_tail") and not (
        canary.has_latency and baseline.has_latency
    ):
        if baseline.has_latency:
            note = "the baseline reports a latency histogram, the canary does not"
            row = _missing_row(metric, note, alpha, "missing")
            reason = f"{metric.name}: {note} (metric renamed or broken?); the verdict fails"
            return _MetricOutcome("fail", [row], [reason], [])
        row = _missing_row(metric, "no latency histogram on the baseline", alpha, "untested")
        return _MetricOutcome("untested", [row], [_missing_reason(metric, row.note)], [])
    scopes = _scopes(metric, policy, ctx, per_tenant)
    if scopes.canary_n[0] <= 0 or scopes.baseline_n[0] <= 0:
        # No requests on a track: too little traffic (a gap the split check cannot call
        # significant), which keeps the verdict inconclusive and fails it at the bake's limit.
        note = (
            f"no requests: canary n={scopes.canary_n[0]:.0f}, baseline n={scopes.baseline_n[0]:.0f}"
        )
        row = _missing_row(metric, note, alpha, "insufficient")
        return _MetricOutcome("insufficient", [row], [f"{metric.name}: {note}"], [])

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

    bad = _bad_effect(metric, scopes.effect, metric.tolerance)
    failed = testable & (adjusted <= levels) & bad
    needed = [] if failed.any() or ctx.interim else _power_shortfall(metric, policy, ctx, scopes)
    rows: list[EvidenceRow] = []
    reasons: list[str] = []
    for i, scope in enumerate(scopes.names):
        result: RowResult
        note = scopes.note[i]
        if failed[i]:
            result = "fail"
        elif not eligible[i]:
            result = "insufficient"
        elif not testable[i]:
            result = "insufficient"
            note = note or "too few events to ever be significant"
        elif i == 0 and needed:
            result = "insufficient"
            note = note or "not enough requests to see the smallest harmful effect"
        else:
            result = "pass"
        if scopes.dispersion[i] > 1.0 and result != "insufficient":
            note = f"{note}; " if note else ""
            note += f"overdispersion x{scopes.dispersion[i]:.1f}"
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
    elif needed or min(scopes.canary_n[0], scopes.baseline_n[0]) < policy.min_requests:
        status = "insufficient"
    else:
        status = "pass"
    return _MetricOutcome(status, rows, reasons, needed)


def _power_shortfall(
    metric: MetricPolicy, policy: JudgePolicy, ctx: _Context, scopes: _Scopes
) -> list[str]:
    """Whether the aggregate could have seen the policy's smallest harmful effect: the
    requests per track a test at the final look's alpha needs to see it with the policy's
    power, from the baseline's rate."""
    if metric.min_effect is None or metric.kind != "error_ratio":
        return []
    n_c, n_b = scopes.canary_n[0], scopes.baseline_n[0]
    e_b = scopes.baseline_value[0] * n_b if np.isfinite(scopes.baseline_value[0]) else 0.0
    rate = (e_b + 0.5) / (n_b + 1.0)  # a zero count is not a zero rate
    # The aggregate's level at the final look: its own share, or (one family with the
    # tenants) at worst alpha / scopes under Holm.
    share = policy.aggregate_alpha_share
    if share is not None and len(scopes.names) > 1:
        level = ctx.final_alpha * share
    else:
        level = ctx.final_alpha / max(1, int(scopes.eligible.sum()))
    # Independent requests: under overdispersion the count test needs phi times more, but the
    # interval ranks keep much of their power (ADR 103); the tables measure what is left.
    required = float(requests_for_power(rate, metric.min_effect, level, policy.power))
    have = min(n_c, n_b)
    if have >= required:
        return []
    effect = format_effect(metric.min_effect, scopes.effect_unit)
    return [
        f"about {math.ceil(required - have):,} more requests needed per track for "
        f"{metric.name} (have {have:,.0f}, need {math.ceil(required):,} to see {effect} "
        f"over the baseline's {100 * rate:.2f}% with {100 * policy.power:g}% power)"
    ]


def _scopes(metric: MetricPolicy, policy: JudgePolicy, ctx: _Context, per_tenant: bool) -> _Scopes:
    canary, baseline, bounds = ctx.canary, ctx.baseline, ctx.bounds
    names = [AGGREGATE, *ctx.tenants] if per_tenant else [AGGREGATE]
    ones = np.ones(len(names))
    dispersed = metric.test == "dispersed"

    def stack(per_tenant_values: FloatArray) -> FloatArray:
        aggregate = per_tenant_values.sum(axis=0, keepdims=True)
        return np.concatenate([aggregate, per_tenant_values]) if per_tenant else aggregate

    def blocked(values: FloatArray, size: int = ctx.block) -> FloatArray:  # scopes x blocks
        return blocks(stack(values), size)

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
        phi, df = ones, ones
        if dispersed:
            phi, df = count_dispersion(
                blocked(canary.errors), blocked(canary.requests),
                blocked(baseline.errors), blocked(baseline.requests),
            )  # fmt: skip
            phi = shared_dispersion(phi, n_c + n_b)
        low, high = ratio_difference_interval(
            e_c / phi, n_c / phi, e_b / phi, n_b / phi, confidence
        )
        if metric.test == "mwu_intervals":
            p, p_min, eligible = _interval_mwu_ratios(canary, baseline, per_tenant, alternative)
        elif metric.test == "robust":
            p, p_min, phi = _robust_counts(canary, baseline, per_tenant, alternative)
            eligible = (n_c > 0) & (n_b > 0)
            low, high = ratio_difference_interval(
                e_c / phi, n_c / phi, e_b / phi, n_b / phi, confidence
            )
        else:
            p, p_min = fisher_exact(e_c / phi, n_c / phi, e_b / phi, n_b / phi, alternative)
            eligible = (n_c > 0) & (n_b > 0)
            if dispersed:
                p, p_min = quasi_p_values(p, phi, df), quasi_p_values(p_min, phi, df)
                # Two views, Bonferroni between them (ADR 100): the corrected count test, and
                # the ranks of per-interval ratios, which a burst moves by one rank only.
                p_rank, p_min_rank, ranked = _interval_mwu_ratios(
                    canary, baseline, per_tenant, alternative
                )
                p_rank = np.where(ranked, p_rank, 1.0)
                p_min_rank = np.where(ranked, p_min_rank, 1.0)
                p = np.minimum(1.0, 2.0 * np.minimum(p, p_rank))
                p_min = np.minimum(1.0, 2.0 * np.minimum(p_min, p_min_rank))
        return _Scopes(
            names, n_c, v_c, n_b, v_b, v_c - v_b, low, high, p, p_min, eligible,
            "ratio", "pp", [""] * len(names), phi,
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
            "req/interval", "relative", [""] * len(names), ones,
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
        block_c = blocked(canary.latency_intervals, ctx.latency_block)
        block_b = blocked(baseline.latency_intervals, ctx.latency_block)
        phi, df = ones, ones
        if dispersed:
            phi, df = rank_dispersion(block_c, block_b)
            phi = shared_dispersion(phi, n_c + n_b)
        _, p = mann_whitney_from_counts(lat_c, lat_b, alternative, phi)
        if dispersed:
            p = quasi_p_values(p, phi, df)
        eligible = (n_c >= guard) & (n_b >= guard)
        eligible[0] = n_c[0] > 0 and n_b[0] > 0
        p_min = np.zeros(len(names))
    else:
        exceed_c, exceed_b, edge, above = _tail_counts(lat_c, lat_b, bounds, q)
        phi, df = ones, ones
        if dispersed:
            block_c = blocked(canary.latency_intervals, ctx.latency_block)
            block_b = blocked(baseline.latency_intervals, ctx.latency_block)
            phi, df = count_dispersion(
                (block_c * above[:, None, :]).sum(axis=2), block_c.sum(axis=2),
                (block_b * above[:, None, :]).sum(axis=2), block_b.sum(axis=2),
            )  # fmt: skip
            phi = shared_dispersion(phi, n_c + n_b)
        p, p_min = fisher_exact(exceed_c / phi, n_c / phi, exceed_b / phi, n_b / phi, alternative)
        if dispersed:
            p, p_min = quasi_p_values(p, phi, df), quasi_p_values(p_min, phi, df)
        eligible = (n_c > 0) & (n_b > 0)
        notes = [f"> {1000.0 * e:g}ms" if np.isfinite(e) else "" for e in edge]
    return _Scopes(
        names, n_c, v_c, n_b, v_b, effect, low, high, p, p_min, eligible,
        "seconds", "relative", notes, phi,
    )  # fmt: skip


def _tail_counts(
    lat_c: FloatArray, lat_b: FloatArray, bounds: FloatArray, q: float
) -> tuple[FloatArray, FloatArray, FloatArray, BoolArray]:
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
    return exceed_c, exceed_b, np.where(total_b > 0, edge, np.nan), above


def _robust_counts(
    canary: _Track, baseline: _Track, per_tenant: bool, alternative: Alternative
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """`test: robust` (ADR 150) on every scope. Intervals, not 60 s blocks, are the units: four
    a track (a minute) can already show a clear regression, and the trimmed spread has more
    degrees of freedom than blocks give."""
    return robust_count_test(
        _interval_matrix(canary.errors, per_tenant),
        _interval_matrix(canary.requests, per_tenant),
        _interval_matrix(baseline.errors, per_tenant),
        _interval_matrix(baseline.requests, per_tenant),
        alternative,
        shared=True,
        min_df=4,
    )


def _interval_matrix(values: FloatArray, per_tenant: bool) -> FloatArray:
    aggregate = values.sum(axis=0, keepdims=True)
    return np.concatenate([aggregate, values]) if per_tenant else aggregate


def _interval_mwu_ratios(
    canary: _Track, baseline: _Track, per_tenant: bool, alternative: Alternative
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """Kayenta's way: Mann-Whitney U on per-interval error ratios, with the smallest p-value
    the pooled ratios allow (all the largest on the canary), for Tarone's rule."""
    req_c = _interval_matrix(canary.requests, per_tenant)
    req_b = _interval_matrix(baseline.requests, per_tenant)
    err_c = _interval_matrix(canary.errors, per_tenant)
    err_b = _interval_matrix(baseline.errors, per_tenant)
    keep_c = req_c > 0
    keep_b = req_b > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios_c = np.where(keep_c, err_c / req_c, 0.0)
        ratios_b = np.where(keep_b, err_b / req_b, 0.0)
    eligible = (keep_c.sum(axis=1) >= 3) & (keep_b.sum(axis=1) >= 3)
    p, p_min = mann_whitney_rows(ratios_c, keep_c, ratios_b, keep_b, alternative)
    p = np.where(eligible, p, 1.0)
    p_min = np.where(eligible, p_min, 1.0)
    return p, p_min, eligible


def _alternative(metric: MetricPolicy) -> Alternative:
    if metric.direction == "increase":
        return "greater"
    if metric.direction == "decrease":
        return "less"
    return "two-sided"


def _bad_effect(metric: MetricPolicy, effect: FloatArray, threshold: float) -> BoolArray:
    e = np.nan_to_num(effect, nan=0.0)
    if metric.direction == "increase":
        return np.asarray(e > threshold)
    if metric.direction == "decrease":
        return np.asarray(e < -threshold)
    return np.asarray(np.abs(e) > threshold)


def _fail_reason(metric: MetricPolicy, row: EvidenceRow, correction: str) -> str:
    tolerance = format_effect(metric.tolerance, row.effect_unit).lstrip("+")
    critical = " (critical)" if metric.critical else ""
    return (
        f"{metric.name}{critical} [{row.scope}]: effect "
        f"{format_effect(row.effect, row.effect_unit)} beyond tolerance {tolerance}, "
        f"p={row.p_value:.2g} ({correction}-adjusted {row.p_adjusted:.2g} <= {row.alpha:.2g}); "
        f"canary n={row.canary_n:.0f}, baseline n={row.baseline_n:.0f}"
    )


def _missing_row(metric: MetricPolicy, note: str, alpha: float, result: RowResult) -> EvidenceRow:
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
        result=result,
        unit="ratio" if metric.kind == "error_ratio" else "seconds",
        effect_unit="pp" if metric.kind == "error_ratio" else "relative",
        note=note,
    )


def _missing_reason(metric: MetricPolicy, note: str) -> str:
    consequence = "fails the verdict" if metric.critical else "is not tested"
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
    latency = np.zeros((len(tenants), k, width))
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
        latency = matrix.reshape(len(tenants), k, width)
    else:
        for t in present:
            intervals: tuple[Interval, ...] = series.tenants[tenants[t]]
            # A tenant seen in fewer intervals misses the earliest ones (its first request
            # came later), so its intervals are aligned to the end of the window.
            offset = k - len(intervals)
            requests[t, offset:] = [iv.requests for iv in intervals]
            errors[t, offset:] = [iv.errors for iv in intervals]
            for j, iv in enumerate(intervals):
                if iv.latency_counts:
                    latency[t, offset + j] = iv.latency_counts
    for name, values in (("requests", requests), ("errors", errors), ("latency", latency)):
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ObservationError(f"{track}: {name} must be finite and non-negative")
    # increase() extrapolation can put errors a hair above requests; more than that is a bug.
    if np.any(errors > requests * 1.01 + 1.0):
        raise ObservationError(f"{track}: more errors than requests in some interval")
    return _Track(requests, np.minimum(errors, requests), latency, has_latency)
