"""The edge cases of issue 12, each on the project's real prod or staging policy: missing data
never passes, no pass without the power to see the smallest harmful effect, the budget holds
per delivery, and the words say what happened."""

import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from delivery.judge import NOT_ENOUGH_TRAFFIC, JudgePolicy, MetricPolicy, judge
from delivery.judge_policy import look_schedule
from delivery.judge_stats import requests_for_power
from delivery.observation import Interval, StepObservation, TrackSeries

BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0)
FAST = (0.30, 0.30, 0.25, 0.10, 0.04, 0.01)  # bucket shares, +Inf last
SLOW = (0.02, 0.08, 0.20, 0.30, 0.25, 0.15)  # about 3x slower
TENANTS = ("acme", "globex", "initech", "umbrella")


def policy(repo_root: Path, env: str) -> JudgePolicy:
    """The environment's judge policy, spread over its delivery as the pipeline does."""
    config = yaml.safe_load((repo_root / "environments" / f"delivery.{env}.yaml").read_text())
    canary = config["canary"]
    return JudgePolicy.from_mapping(config["judge"]).for_delivery(
        steps=len(canary["steps"]), max_extensions=canary["max_extensions"]
    )


def interval(
    requests: float, errors: float = 0.0, shape: tuple[float, ...] | None = FAST
) -> Interval:
    counts = () if shape is None else tuple(requests * c for c in shape)
    return Interval(requests, errors, counts)


def track(
    per_interval: float = 200.0,
    errors: float = 0.0,
    intervals: int = 10,
    shape: tuple[float, ...] | None = FAST,
    tenants: tuple[str, ...] = TENANTS,
    override: dict[str, tuple[Interval, ...]] | None = None,
) -> TrackSeries:
    series = {
        t: tuple(interval(per_interval, errors, shape) for _ in range(intervals)) for t in tenants
    }
    series.update(override or {})
    return TrackSeries(series)


def observe(canary: TrackSeries, baseline: TrackSeries) -> StepObservation:
    return StepObservation(BOUNDS, 15.0, canary, baseline)


@pytest.fixture(params=["prod", "staging"])
def real(request: pytest.FixtureRequest, repo_root: Path) -> JudgePolicy:
    return policy(repo_root, request.param)


def test_control_identical_healthy_tracks_pass(real: JudgePolicy) -> None:
    # The control for every case below: what passes when nothing is missing.
    verdict = judge(observe(track(errors=0.2), track(errors=0.2)), real)
    assert verdict.outcome == "pass", verdict.reasons


@pytest.mark.parametrize("how", ["zero requests", "absent from the series"])
def test_a_tenant_missing_from_the_canary_fails(real: JudgePolicy, how: str) -> None:
    baseline = track(errors=0.2)  # initech: 2,000 requests on the baseline
    if how == "zero requests":
        canary = track(errors=0.2, override={"initech": (interval(0.0),) * 10})
    else:
        canary = track(errors=0.2, tenants=("acme", "globex", "umbrella"))
    verdict = judge(observe(canary, baseline), real)
    assert verdict.outcome == "fail"
    assert any("tenant initech: the canary served none of it" in r for r in verdict.reasons)
    assert any(r.metric == "traffic_split" and r.scope == "initech" for r in verdict.failing())


def test_a_latency_histogram_missing_from_the_canary_fails(real: JudgePolicy) -> None:
    # The histogram was renamed or broken while the canary is 3x slower.
    verdict = judge(observe(track(shape=None), track()), real)
    assert verdict.outcome == "fail"
    assert any("the baseline reports a latency histogram, the canary does not" in r
               for r in verdict.reasons)  # fmt: skip
    slower = judge(observe(track(shape=SLOW), track()), real)
    assert slower.outcome == "fail"  # with the histogram, the slowdown itself fails


def test_prod_500_requests_nine_errors_against_none_is_not_a_pass(repo_root: Path) -> None:
    prod = policy(repo_root, "prod")
    canary_intervals = tuple(interval(12.5, 1.0 if i < 9 else 0.0) for i in range(10))
    canary = TrackSeries(
        {"acme": canary_intervals, **{t: (interval(12.5),) * 10 for t in TENANTS[1:]}}
    )
    baseline = track(per_interval=12.5)
    assert sum(iv.requests for ivs in canary.tenants.values() for iv in ivs) == 500
    verdict = judge(observe(canary, baseline), prod)
    assert verdict.outcome == "inconclusive"
    assert re.match(
        r"inconclusive: about [\d,]+ more requests needed per track", verdict.reasons[0]
    )
    at_limit = judge(observe(canary, baseline), prod, at_limit=True)
    assert at_limit.outcome == "fail"
    assert at_limit.reasons[0].startswith(NOT_ENOUGH_TRAFFIC)


def test_half_the_canarys_traffic_missing_fails(real: JudgePolicy) -> None:
    verdict = judge(observe(track(per_interval=100.0), track(per_interval=200.0)), real)
    assert verdict.outcome == "fail"
    assert any(r.startswith("traffic_split [aggregate]: the canary's traffic: canary 4,000")
               for r in verdict.reasons)  # fmt: skip


def test_a_small_random_gap_in_the_split_is_not_a_failure(real: JudgePolicy) -> None:
    # 5% fewer requests on the canary is routing noise, within the tolerance.
    canary = track(per_interval=190.0, errors=0.19)
    verdict = judge(observe(canary, track(errors=0.2)), real)
    assert verdict.outcome == "pass", verdict.reasons


def test_no_pass_without_power_and_the_requests_needed_come_from_the_baseline_rate(
    repo_root: Path,
) -> None:
    staging = policy(repo_root, "staging")
    # 1,200 requests a track at a 1% baseline rate: far from the power to see +1pp.
    few = track(per_interval=30.0, errors=0.3)
    verdict = judge(observe(few, few), staging)
    assert verdict.outcome == "inconclusive"
    match = re.match(
        r"inconclusive: about ([\d,]+) more requests needed per track", verdict.reasons[0]
    )
    assert match is not None
    more = int(match.group(1).replace(",", ""))
    assert staging.aggregate_alpha_share is not None
    share = staging.aggregate_alpha_share
    alpha = staging.look_alpha(interim=False) / (len(staging.metrics) + 1) * share
    rate = (12.0 + 0.5) / (1200.0 + 1.0)
    expected = requests_for_power(rate, 0.01, alpha, staging.power)
    assert more == math.ceil(float(expected) - 1200.0)
    # A rarer baseline needs fewer requests: N follows the baseline's rate.
    clean = track(per_interval=30.0, errors=0.0)
    fewer = judge(observe(clean, clean), staging).reasons[0]
    match_clean = re.match(r"inconclusive: about ([\d,]+) more", fewer)
    assert match_clean is not None
    assert int(match_clean.group(1).replace(",", "")) < more
    # At the bake's limit, the same data is a failure the user can read.
    limit = judge(observe(few, few), staging, at_limit=True)
    assert limit.outcome == "fail"
    assert limit.reasons[0].startswith(
        "not enough traffic to judge; add synthetic traffic or lengthen the bake"
    )


def test_with_the_power_there_the_same_rate_passes(repo_root: Path) -> None:
    staging = policy(repo_root, "staging")
    many = track(per_interval=600.0, errors=0.6, intervals=20)
    assert judge(observe(many, many), staging).outcome == "pass"


def test_the_score_means_the_same_for_any_number_of_metrics() -> None:
    for count in (1, 3, 7, 20):
        metrics = tuple(
            MetricPolicy(name=f"l{i}", kind="latency", tolerance=0.05) for i in range(count)
        )
        verdict = judge(
            observe(track(shape=SLOW), track()), JudgePolicy(metrics=metrics, pass_score=95)
        )
        assert verdict.score == pytest.approx(0.0)
        assert verdict.outcome == "fail"
        good = judge(observe(track(), track()), JudgePolicy(metrics=metrics, pass_score=95))
        assert good.score == pytest.approx(100.0)
        assert good.outcome == "pass"
    # One failure among twenty equal metrics: 95, exactly what pass_score 95 tolerates.
    mixed = (
        *(MetricPolicy(name=f"e{i}", kind="error_ratio") for i in range(19)),
        MetricPolicy(name="l", kind="latency", tolerance=0.05),
    )
    verdict = judge(observe(track(shape=SLOW), track()), JudgePolicy(metrics=mixed, pass_score=95))
    assert verdict.score == pytest.approx(95.0)
    assert verdict.outcome == "pass"
    assert "l failed" in verdict.render_table()


def test_the_table_says_not_tested_too_little_data_and_passed(real: JudgePolicy) -> None:
    tiny: dict[str, tuple[Interval, ...]] = {"acme": (interval(0.2, shape=None),) * 10}
    no_latency = track(shape=None, errors=0.2, override=tiny)
    text = judge(observe(no_latency, no_latency), real).render_table(all_tenants=True)
    assert "latency not tested" in text
    assert "too little data" in text
    assert "passed" in text
    assert "pass (" not in text


def test_interim_looks_are_spread_over_the_whole_bake() -> None:
    prod = look_schedule(600.0, 15.0, 9)
    assert prod == (60.0, 120.0, 180.0, 240.0, 300.0, 360.0, 420.0, 480.0, 540.0)
    staging = look_schedule(300.0, 15.0, 9)
    assert staging[0] == 30.0
    assert staging[-1] == 270.0
    assert all(t % 15 == 0 for t in staging)
    short = look_schedule(12.0, 2.0, 9)  # more looks than intervals: merged, never at the end
    assert short == (4.0, 6.0, 8.0, 10.0)
    assert look_schedule(300.0, 15.0, 0) == ()


@pytest.mark.parametrize("env", ["prod", "staging", "dev"])
def test_the_budget_holds_over_every_look_step_and_extension(repo_root: Path, env: str) -> None:
    p = policy(repo_root, env)
    assert p.steps > 1
    assert p.max_extensions >= 1
    assert p.planned_alpha() <= p.alpha * (1 + 1e-9)
    interim = p.look_alpha(interim=True)
    final = p.look_alpha(interim=False)
    assert p.steps * (p.interim_looks * interim + (1 + p.max_extensions) * final) == pytest.approx(
        p.alpha
    )


def test_interim_looks_spend_their_own_smaller_share(repo_root: Path) -> None:
    staging = policy(repo_root, "staging")
    assert staging.look_alpha(interim=True) < staging.look_alpha(interim=False) / 5
    base = track(per_interval=600.0, errors=0.6, intervals=8)
    clear = track(per_interval=600.0, errors=30.6, intervals=8)  # +5pp: stopped early
    early = judge(observe(clear, base), staging, interim=True)
    assert early.outcome == "fail"
    assert early.alpha == pytest.approx(staging.look_alpha(interim=True))
    # The count test alone, on +0.17pp over 19,200 requests a track: enough evidence for the
    # final look's share, not for an interim look's.
    counts = replace(staging, metrics=(replace(staging.metrics[0], test="exact"),))
    slight = track(per_interval=600.0, errors=1.65, intervals=8)
    assert judge(observe(slight, base), counts, interim=True).outcome == "inconclusive"
    assert judge(observe(slight, base), counts).outcome == "fail"


def test_critical_effect_behaves_as_kayentas_critical_increase() -> None:
    def policy_with(critical_effect: float | None) -> JudgePolicy:
        return JudgePolicy(
            metrics=(
                MetricPolicy(name="errors", kind="error_ratio", critical=True, weight=1,
                             critical_effect=critical_effect),
                *(MetricPolicy(name=f"l{i}", kind="latency", weight=1) for i in range(19)),
            ),
            pass_score=95,
        )  # fmt: skip

    bad = observe(track(errors=6.0), track(errors=0.2))  # +2.9pp
    default = judge(bad, policy_with(None))
    assert default.outcome == "fail"  # Kayenta's default criticalIncrease: any failure
    assert default.score == 0.0
    mild = judge(bad, policy_with(0.05))  # below criticalIncrease: one metric in twenty
    assert mild.score == pytest.approx(95.0)
    assert mild.outcome == "pass"
    severe = judge(bad, policy_with(0.02))
    assert severe.outcome == "fail"
    assert severe.score == 0.0
