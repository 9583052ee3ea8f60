"""The judge on hand-built observations: outcomes, evidence, reasons, renderings, bad input."""

import json
from dataclasses import replace

import pytest
from delivery.judge import JudgePolicy, MetricPolicy, ObservationError, judge
from delivery.observation import Interval, StepObservation, TrackSeries

BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25)
FAST = (100.0, 400.0, 300.0, 150.0, 45.0, 5.0)  # per 1,000 requests, last bucket +Inf
SLOW = (20.0, 130.0, 350.0, 300.0, 170.0, 30.0)
TENANTS = ("acme", "globex", "initech", "umbrella")


def _interval(requests: float, errors: float, shape: tuple[float, ...] = FAST) -> Interval:
    return Interval(requests, errors, tuple(requests * c / 1000.0 for c in shape))


def _track(
    requests: float = 1000.0,
    errors: float = 1.0,
    intervals: int = 10,
    shape: tuple[float, ...] = FAST,
    overrides: dict[str, Interval] | None = None,
) -> TrackSeries:
    tenants = {}
    for tenant in TENANTS:
        iv = (overrides or {}).get(tenant, _interval(requests, errors, shape))
        tenants[tenant] = (iv,) * intervals
    return TrackSeries(tenants)


def _observation(canary: TrackSeries, baseline: TrackSeries | None = None) -> StepObservation:
    return StepObservation(BOUNDS, 15.0, canary, baseline or _track())


def test_same_behaviour_passes_with_full_evidence() -> None:
    verdict = judge(_observation(_track()), JudgePolicy())
    assert verdict.outcome == "pass"
    assert verdict.score == pytest.approx(100.0)
    scopes = {(row.metric, row.scope) for row in verdict.evidence}
    assert ("error_ratio", "aggregate") in scopes
    assert {("error_ratio", t) for t in TENANTS} <= scopes
    assert {("latency", t) for t in TENANTS} <= scopes
    assert ("latency_p99", "aggregate") in scopes
    agg = next(r for r in verdict.evidence if r.metric == "error_ratio" and r.scope == "aggregate")
    assert agg.canary_n == 40_000
    assert agg.baseline_n == 40_000
    assert agg.canary_value == pytest.approx(0.001)
    assert agg.interval is not None
    assert agg.interval[0] < 0 < agg.interval[1]


def test_more_errors_fail_the_critical_metric_and_say_why() -> None:
    verdict = judge(_observation(_track(errors=50.0)), JudgePolicy())
    assert verdict.outcome == "fail"
    assert "critical metric(s) failed: error_ratio" in verdict.reasons[0]
    failing = verdict.failing()
    assert {row.scope for row in failing} == {"aggregate", *TENANTS}
    row = failing[0]
    assert row.effect == pytest.approx(0.049)
    assert row.p_adjusted is not None
    assert row.p_adjusted <= row.alpha
    assert any("effect +4.90pp beyond tolerance 0.00pp" in r for r in verdict.reasons)


def test_one_broken_tenant_is_named_even_when_the_aggregate_hides_it() -> None:
    # initech: 8% errors on 1,000 req/interval, while the other three stay at 0.1%.
    policy = JudgePolicy()
    broken = _track(overrides={"initech": _interval(1000.0, 80.0)})
    verdict = judge(_observation(broken), policy)
    assert verdict.outcome == "fail"
    assert any(row.scope == "initech" for row in verdict.failing())
    assert any("[initech]" in reason for reason in verdict.reasons)
    # Without the per-tenant view and with a 3pp tolerance, the aggregate (+2pp) hides it.
    aggregate_only = replace(
        policy,
        metrics=tuple(
            replace(m, per_tenant=False, tolerance=0.03 if m.kind == "error_ratio" else m.tolerance)
            for m in policy.metrics
        ),
    )
    assert judge(_observation(broken), aggregate_only).outcome == "pass"


def test_a_tiny_tenant_does_not_dilute_the_correction() -> None:
    # 10 requests and no errors can never be significant: Tarone drops them from the family.
    tiny = _track(overrides={"acme": _interval(1.0, 0.0), "globex": _interval(1.0, 0.0)})
    verdict = judge(_observation(tiny, tiny), JudgePolicy())
    rows = {r.scope: r for r in verdict.evidence if r.metric == "error_ratio"}
    assert rows["acme"].p_adjusted is None
    assert rows["acme"].note == "too few events to ever be significant"
    assert rows["acme"].result == "insufficient"  # printed "too little data", never "passed"
    latency = {r.scope: r for r in verdict.evidence if r.metric == "latency"}
    assert latency["acme"].result == "insufficient"


def test_slower_canary_fails_latency() -> None:
    verdict = judge(_observation(_track(shape=SLOW)), JudgePolicy())
    assert verdict.outcome == "fail"
    failed = {row.metric for row in verdict.failing()}
    assert {"latency", "latency_p99"} <= failed
    assert verdict.score is not None
    assert verdict.score < JudgePolicy().pass_score


def test_faster_canary_is_not_a_regression() -> None:
    verdict = judge(_observation(_track(), _track(shape=SLOW)), JudgePolicy())
    assert verdict.outcome == "pass"


def test_no_requests_on_either_track_is_too_little_traffic_and_fails_at_the_limit() -> None:
    empty = _observation(TrackSeries({}), TrackSeries({}))
    verdict = judge(empty, JudgePolicy())
    assert verdict.outcome == "inconclusive"
    results = {row.metric: row.result for row in verdict.evidence}
    assert results == {
        "error_ratio": "insufficient",
        "latency": "untested",
        "latency_p99": "untested",
    }
    assert "error_ratio too little data" in verdict.render_table()
    at_limit = judge(empty, JudgePolicy(), at_limit=True)
    assert at_limit.outcome == "fail"
    assert at_limit.reasons[0].startswith("not enough traffic to judge")


def test_latency_on_neither_track_is_not_tested_and_left_out_of_the_score() -> None:
    no_histograms = TrackSeries({t: (Interval(1000.0, 1.0, ()),) * 10 for t in TENANTS})
    verdict = judge(_observation(no_histograms, no_histograms), JudgePolicy())
    assert {m.name: m.status for m in verdict.metrics}["latency"] == "untested"
    assert verdict.outcome == "pass"
    assert "latency not tested" in verdict.render_table()
    critical_latency = JudgePolicy(
        metrics=(MetricPolicy(name="latency", kind="latency", critical=True),)
    )
    verdict = judge(_observation(no_histograms, no_histograms), critical_latency)
    assert verdict.outcome == "fail"


def test_too_few_requests_is_inconclusive_not_a_pass() -> None:
    few = _track(requests=4.0, errors=0.0, intervals=5)
    verdict = judge(_observation(few, few), JudgePolicy())
    assert verdict.outcome == "inconclusive"
    assert verdict.reasons[0].startswith("inconclusive: about 120 more requests needed per track")


def test_a_clear_failure_is_not_hidden_by_the_sample_guard() -> None:
    few_bad = _track(requests=4.0, errors=4.0, intervals=5)
    few_good = _track(requests=4.0, errors=0.0, intervals=5)
    assert judge(_observation(few_bad, few_good), JudgePolicy()).outcome == "fail"


def test_interim_looks_never_pass_but_may_fail_early() -> None:
    policy = JudgePolicy()
    good = judge(_observation(_track()), policy, interim=True)
    assert good.outcome == "inconclusive"
    assert good.interim
    assert good.alpha <= policy.alpha * policy.interim_alpha_share / policy.interim_looks
    bad = judge(_observation(_track(errors=100.0)), policy, interim=True)
    assert bad.outcome == "fail"


def test_the_score_is_the_weight_share_that_passed_and_below_pass_score_fails() -> None:
    policy = JudgePolicy(
        metrics=(
            MetricPolicy(name="error_ratio", kind="error_ratio", critical=True, weight=4),
            MetricPolicy(name="latency", kind="latency", weight=1),
        ),
        pass_score=95,
    )
    verdict = judge(_observation(_track(shape=SLOW)), policy)
    assert verdict.score == pytest.approx(80.0)
    assert verdict.outcome == "fail"
    assert verdict.reasons[0] == "score 80.0 < 95 (latency failed)"
    lenient = replace(policy, pass_score=80)
    assert judge(_observation(_track(shape=SLOW)), lenient).outcome == "pass"


def test_request_rate_metric_sees_a_canary_that_receives_less_traffic() -> None:
    policy = JudgePolicy(
        metrics=(
            MetricPolicy(name="rate", kind="request_rate", direction="decrease", tolerance=0.1),
        )
    )
    canary = TrackSeries(
        {t: tuple(_interval(600.0 + 10 * i, 0.0) for i in range(10)) for t in TENANTS}
    )
    baseline = TrackSeries(
        {t: tuple(_interval(1000.0 + 10 * i, 0.0) for i in range(10)) for t in TENANTS}
    )
    verdict = judge(_observation(canary, baseline), policy)
    assert verdict.outcome == "fail"
    assert verdict.failing()[0].effect == pytest.approx(645 / 1045 - 1)
    assert judge(_observation(baseline, baseline), policy).outcome == "pass"


def test_mwu_on_interval_ratios_is_available_for_comparison() -> None:
    policy = JudgePolicy(
        metrics=(MetricPolicy(name="e", kind="error_ratio", critical=True, test="mwu_intervals"),)
    )
    canary = TrackSeries(
        {t: tuple(_interval(1000.0, 20.0 + i) for i in range(10)) for t in TENANTS}
    )
    baseline = TrackSeries(
        {t: tuple(_interval(1000.0, 1.0 + i) for i in range(10)) for t in TENANTS}
    )
    assert judge(_observation(canary, baseline), policy).outcome == "fail"
    assert judge(_observation(baseline, baseline), policy).outcome == "pass"


def test_verdict_renders_as_json_text_and_markdown() -> None:
    verdict = judge(
        _observation(_track(overrides={"acme": _interval(1000.0, 80.0)})), JudgePolicy()
    )
    doc = json.loads(json.dumps(verdict.to_json()))
    assert doc["outcome"] == "fail"
    assert {"metric", "scope", "canary", "baseline", "effect", "interval", "p_value"} <= set(
        doc["evidence"][0]
    )
    text = verdict.render_table()
    assert text.startswith("Verdict: FAIL")
    assert "acme" in text
    assert "umbrella" not in text
    assert "tenant rows that passed or had too little data not shown" in text
    assert "umbrella" in verdict.render_table(all_tenants=True)
    markdown = verdict.render_table(markdown=True)
    assert "| metric | scope |" in markdown
    assert "|---|" in markdown
    assert "- critical metric(s) failed: error_ratio" in markdown


@pytest.mark.parametrize(
    ("observation", "message"),
    [
        (StepObservation((), 15.0, _track(), _track()), "at least one finite"),
        (StepObservation((0.1, 0.05), 15.0, _track(), _track()), "strictly ascending"),
        (StepObservation(BOUNDS, 0.0, _track(), _track()), "interval_seconds must be positive"),
        (
            StepObservation(
                BOUNDS, 15.0, TrackSeries({"a": (Interval(10.0, 20.0, ()),)}), _track()
            ),
            "more errors than requests",
        ),
        (
            StepObservation(BOUNDS, 15.0, TrackSeries({"a": (Interval(-1.0, 0.0, ()),)}), _track()),
            "requests must be finite and non-negative",
        ),
        (
            StepObservation(
                BOUNDS, 15.0, TrackSeries({"a": (Interval(1.0, 0.0, (1.0,)),)}), _track()
            ),
            "latency_counts must have len(bounds) + 1 = 6",
        ),
    ],
)
def test_malformed_observations_are_rejected(observation: StepObservation, message: str) -> None:
    with pytest.raises(ObservationError) as err:
        judge(observation, JudgePolicy())
    assert message in str(err.value)


def test_uneven_tenants_are_aligned_to_the_end_of_the_window() -> None:
    late = dict(_track().tenants)
    late["newcomer"] = (_interval(1000.0, 1.0),) * 3  # first request came late in the window
    verdict = judge(_observation(TrackSeries(late), TrackSeries(late)), JudgePolicy())
    assert verdict.outcome == "pass"
    assert any(row.scope == "newcomer" for row in verdict.evidence)


def test_aggregate_alpha_share_splits_the_metric_alpha() -> None:
    policy = JudgePolicy(aggregate_alpha_share=0.5)
    verdict = judge(_observation(_track(errors=50.0)), policy)
    rows = {r.scope: r for r in verdict.evidence if r.metric == "error_ratio"}
    default = judge(_observation(_track(errors=50.0)), JudgePolicy(aggregate_alpha_share=None))
    metric_alpha = next(r.alpha for r in default.evidence if r.metric == "error_ratio")
    assert rows["aggregate"].alpha == pytest.approx(metric_alpha / 2)
    assert rows["acme"].alpha == pytest.approx(metric_alpha / 2)
    assert rows["aggregate"].p_adjusted == rows["aggregate"].p_value  # a family of one
    assert verdict.outcome == "fail"
    assert JudgePolicy.from_mapping({"aggregate_alpha_share": None}).aggregate_alpha_share is None
    with pytest.raises(ValueError, match="aggregate_alpha_share must be within"):
        JudgePolicy(aggregate_alpha_share=1.0)
