"""The evaluation harness: its traffic model, its peers' judges, and a short seeded run of our
judge as a regression guard (the full evaluation is bench/judge/run.sh)."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from judge_eval.baselines import ARGO, FLAGGER_SERVICE
from judge_eval.deliveries import Plan, run
from judge_eval.harness import aggregate_mwu, evaluate, look_schedule, ours
from judge_eval.realistic import HEALTHY, Effect, Noise, World, generate_step
from judge_eval.scenarios import AA, STANDARD, Scenario, tenant_shares
from judge_eval.traffic import LatencyModel, TrafficModel

SEED = 424242
MODEL = TrafficModel()


def _scenario(name: str) -> Scenario:
    return next(s for s in STANDARD if s.name == name)


def test_traffic_model_shapes() -> None:
    shares = MODEL.tenant_shares()
    assert shares.sum() == pytest.approx(1.0)
    assert np.all(np.diff(shares) < 0)  # Zipf: strictly decreasing
    probabilities = MODEL.latency.bucket_probabilities(MODEL.bounds)
    assert probabilities.size == len(MODEL.bounds) + 1
    assert probabilities.sum() == pytest.approx(1.0)
    low = tenant_shares(MODEL, _scenario("low-traffic tenant at 5% 5xx"))
    assert low.sum() == pytest.approx(1.0)
    assert low[-1] * MODEL.rate == pytest.approx(0.5)


@pytest.mark.parametrize("tail_only", [False, True])
def test_slower_latency_moves_p99_by_the_factor(tail_only: bool) -> None:
    base = LatencyModel(median=0.1, sigma=1.0)
    slow = base.slower(1.25, tail_only=tail_only)
    assert slow.quantile(0.99) == pytest.approx(1.25 * base.quantile(0.99))
    assert (slow.median == base.median) is tail_only


@pytest.mark.parametrize(
    "kwargs", [{"rate": 0.0}, {"weight": 0.6}, {"tenants": 0}, {"interval_seconds": 0.0}]
)
def test_traffic_model_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        TrafficModel(**kwargs)  # type: ignore[arg-type]


def test_look_schedule_matches_the_pipeline() -> None:
    interim, final, extension = look_schedule(MODEL, 30.0)
    assert interim == list(range(2, 20, 2))
    assert final == 20
    assert extension == [22, 24, 26, 28]


def test_same_seed_same_results_and_another_seed_differs() -> None:
    scenario = _scenario("+0.5pp 5xx")
    first = evaluate(MODEL, scenario, 6, SEED, [ours()])
    again = evaluate(MODEL, scenario, 6, SEED, [ours()])
    other = evaluate(MODEL, scenario, 6, SEED + 1, [ours()])
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.fail_time, b.fail_time)
    assert any(
        not np.array_equal(a.fail_time, c.fail_time) for a, c in zip(first, other, strict=True)
    )


def test_evaluate_rejects_no_runs() -> None:
    with pytest.raises(ValueError, match="runs must be"):
        evaluate(MODEL, AA, 0, SEED, [ours()])


def test_guard_a_a_false_fails_stay_rare() -> None:
    (result,) = evaluate(MODEL, AA, 20, SEED, [ours()], threshold_judges=())
    assert result.fail_rate == 0.0
    assert result.median_pass_time() == MODEL.window_seconds


def test_guard_big_error_regression_is_failed_within_two_minutes() -> None:
    results = evaluate(MODEL, _scenario("+5pp 5xx"), 10, SEED, [ours()], (FLAGGER_SERVICE, ARGO))
    mine = next(r for r in results if r.judge == "ours")
    assert mine.fail_rate == 1.0
    assert mine.median_fail_time() <= 120
    flagger = next(r for r in results if r.judge == FLAGGER_SERVICE.name)
    assert flagger.median_fail_time() >= 60  # it checks once a minute


def test_guard_one_percentage_point_is_detected_in_a_step() -> None:
    (result,) = evaluate(MODEL, _scenario("+1pp 5xx"), 10, SEED, [ours()], threshold_judges=())
    assert result.fail_rate >= 0.9


def test_guard_a_broken_small_tenant_is_seen_only_per_tenant() -> None:
    scenario = _scenario("low-traffic tenant at 100% 5xx")
    results = evaluate(MODEL, scenario, 10, SEED, [ours(), aggregate_mwu()], threshold_judges=())
    by_judge = {r.judge: r for r in results}
    assert by_judge["ours"].fail_rate >= 0.9
    assert by_judge["aggregate-only MWU (Kayenta-like)"].fail_rate < by_judge["ours"].fail_rate


def test_guard_threshold_judges_behave_like_thresholds() -> None:
    results = evaluate(MODEL, AA, 30, SEED, [], (FLAGGER_SERVICE, ARGO))
    for result in results:
        assert result.fail_rate <= 0.1
        assert math.isnan(result.median_fail_time()) or result.median_fail_time() % 60 == 0


def _staging(repo_root: Path) -> Plan:
    return Plan.from_file(repo_root / "environments" / "delivery.staging.yaml")


def test_guard_overdispersed_errors_do_not_abort_a_healthy_step(repo_root: Path) -> None:
    # Issue 12's cell: interval CV 2.5 gave 6-17% false fails per step with Fisher alone.
    world = World(rate=1000.0, noise=Noise("CV 2.5", error_cv=2.5), tenants=10)
    step = _staging(repo_root).one_step(0.10, 300.0)
    outcomes = run(step, world, HEALTHY, 12, SEED)
    assert outcomes.rate("harm") == 0.0
    # ... while an uncorrected count test on the same traffic does abort some.
    exact = replace(step.policy, metrics=(replace(step.policy.metrics[0], test="exact"),))
    uncorrected = run(replace(step, policy=exact), world, HEALTHY, 12, SEED)
    assert uncorrected.rate("harm") > 0.0


def test_guard_low_traffic_ends_in_not_enough_traffic_never_a_verdict(repo_root: Path) -> None:
    world = World(rate=5.0, noise=Noise("bursty", burst_rate=0.02), tenants=5)
    outcomes = run(_staging(repo_root), world, HEALTHY, 6, SEED)
    assert outcomes.ending == ["traffic"] * 6
    broken = run(_staging(repo_root), world, Effect("+5pp", error_delta=0.05), 6, SEED)
    assert "promoted" not in broken.ending


def test_realistic_noise_is_what_it_says() -> None:
    rng = np.random.default_rng(SEED)
    world = World(rate=1000.0, noise=Noise("n", error_cv=2.0, neighbour_rate=0.2), tenants=5)
    traffic = generate_step(world, HEALTHY, 0.1, 40, 15.0, 50, rng)
    assert traffic.requests.shape == (50, 2, 5, 40)
    ratios = traffic.errors.sum(axis=2) / np.maximum(traffic.requests.sum(axis=2), 1)
    cv = ratios.std(axis=-1) / ratios.mean(axis=-1)
    assert 1.5 < float(np.median(cv)) < 2.5  # overdispersed as asked (binomial alone: ~0.4)
    latency = traffic.latency.sum(axis=2)  # runs x tracks x intervals x buckets
    median_bucket = np.argmax(np.cumsum(latency, axis=-1) >= latency.sum(-1, keepdims=True) / 2, -1)
    assert np.ptp(median_bucket, axis=-1).max() >= 1  # slow spells move the median


def test_error_storms_last_their_length() -> None:
    # Storms start in r of a track's intervals and last L: away from the window's start an
    # interval is in one with probability 1 - (1 - r)^L, and every storm is L intervals long.
    rng = np.random.default_rng(SEED)
    noise = Noise("storms", burst_rate=0.05, burst_ratio=0.5, burst_length=3)
    traffic = generate_step(World(rate=1000.0, noise=noise, tenants=2), HEALTHY, 0.5, 60, 15.0,
                            40, rng)  # fmt: skip
    ratio = traffic.errors.sum(axis=2) / np.maximum(traffic.requests.sum(axis=2), 1)
    storm = ratio > 0.25  # 0.1% outside a storm, 50% inside
    share = float(storm[..., 2:].mean())
    expected = 1.0 - (1.0 - 0.05) ** 3
    assert abs(share - expected) < 4.0 * math.sqrt(expected * (1 - expected) / storm[..., 2:].size)
    edges = np.diff(storm.astype(int), axis=-1)
    for run_track in zip(*np.nonzero(edges == 1), strict=True):  # each storm start inside
        start = run_track[-1] + 1
        if start + 3 <= storm.shape[-1]:
            assert storm[(*run_track[:-1], slice(start, start + 3))].all()


def test_report_pools_chunks_and_bounds_false_fails(tmp_path: Path) -> None:
    from judge_eval.report import BEGIN, END, Row, _replace_section, merge, wilson_upper

    def row(runs: int, fails: float) -> Row:
        return Row("main", "c", "A/A", "ours", runs, fails, 0.0, math.nan, 300.0, 0.1, 100.0,
                   0.1, 300.0, 20)  # fmt: skip

    (pooled,) = merge([row(100, 0.0), row(300, 0.02)])
    assert pooled.runs == 400
    assert pooled.fail_rate == pytest.approx(0.015)
    assert wilson_upper(0.0, 1000) == pytest.approx(0.0038, abs=1e-4)
    assert wilson_upper(0.01, 1000) > 0.01
    doc = tmp_path / "judge.md"
    doc.write_text(f"intro\n{BEGIN}\nold\n{END}\nafter\n")
    _replace_section(doc, "new table")
    assert doc.read_text() == f"intro\n{BEGIN}\nnew table\n{END}\nafter\n"
    doc.write_text("no markers")
    with pytest.raises(SystemExit, match="missing the markers"):
        _replace_section(doc, "x")
