"""`test: robust` for the 5xx ratio (ADR 150): each track's worst intervals trimmed, the
overdispersion measured between intervals. Every expectation comes from the binomial model
the counts are drawn from (a level, its sampling error), not from the judge's constants."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from delivery.judge import JudgePolicy, MetricPolicy, PolicyError, judge
from delivery.judge_stats import fisher_exact, robust_count_test, trim_intervals
from delivery.observation import Interval, StepObservation, TrackSeries

RUNS = 4000
K = 20  # a 5-minute bake of 15 s intervals
N = 150  # requests a track and interval (100 req/s at 10% weight)


def _upper(level: float, runs: int = RUNS) -> float:
    """The most a test holding `level` should reject in `runs` runs: level + 3 sampling sd."""
    return level + 3.0 * math.sqrt(level * (1.0 - level) / runs)


def _tracks(
    rng: np.random.Generator, canary_ratio: float, baseline_ratio: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = np.full((RUNS, K), float(N))
    e_c = rng.binomial(N, canary_ratio, size=(RUNS, K)).astype(float)
    e_b = rng.binomial(N, baseline_ratio, size=(RUNS, K)).astype(float)
    return e_c, n.copy(), e_b, n.copy()


def _burst(errors: np.ndarray, rng: np.random.Generator, ratio: float = 0.10) -> np.ndarray:
    """One interval per run, at random, at `ratio` 5xx (a dependency hiccup on that track)."""
    out = errors.copy()
    where = rng.integers(0, K, size=RUNS)
    out[np.arange(RUNS), where] = rng.binomial(N, ratio, size=RUNS)
    return out


def test_trim_intervals_drops_each_rows_worst_tenth_and_never_an_empty_interval() -> None:
    errors = np.array([[0.0, 5, 1, 0, 2], [0, 0, 0, 0, 0], [3, 0, 0, 0, 0]])
    requests = np.array([[10.0, 10, 10, 0, 10], [5, 5, 5, 5, 5], [10, 10, 10, 10, 10]])
    kept_e, kept_n = trim_intervals(errors, requests)
    # Row 0: 4 intervals served requests, so max(1, ceil(0.4)) = 1 goes: the 50% interval.
    assert kept_e[0].tolist() == [0, 0, 1, 0, 2]
    assert kept_n[0].tolist() == [10, 0, 10, 0, 10]  # the empty interval stays (nothing to trim)
    assert kept_n[1].sum() == 20  # one interval of five, even without errors
    assert kept_e[2].sum() == 0  # the burst is gone
    many = np.arange(40.0)[None, :]
    assert (trim_intervals(many, np.full((1, 40), 100.0))[1] == 0).sum() == 4  # 10% of 40


def test_robust_test_holds_its_level_on_binomial_counts() -> None:
    rng = np.random.default_rng(20261129)
    p, _, _ = robust_count_test(*_tracks(rng, 0.01, 0.01), "greater")
    for level in (0.05, 0.01):
        assert np.mean(p <= level) <= _upper(level), level


def test_a_burst_on_the_canary_fails_the_plain_count_test_and_not_the_robust_one() -> None:
    rng = np.random.default_rng(7)
    e_c, n_c, e_b, n_b = _tracks(rng, 0.001, 0.001)
    e_c = _burst(e_c, rng)
    plain, _ = fisher_exact(e_c.sum(axis=1), n_c.sum(axis=1), e_b.sum(axis=1), n_b.sum(axis=1),
                            "greater")  # fmt: skip
    robust, _, _ = robust_count_test(e_c, n_c, e_b, n_b, "greater")
    assert np.mean(plain <= 0.01) > 0.5  # the burst alone: ~15 errors against ~3
    assert np.mean(robust <= 0.01) <= _upper(0.01)


def test_a_burst_on_the_baseline_does_not_hide_one_percentage_point() -> None:
    # +1 pp on every canary interval (33 errors against 3 in the step), a burst on the
    # baseline (15 more errors there). Trimmed, each track keeps 18 of 20 intervals: the
    # canary about 0.9 x 30 errors against the baseline's ~3, a one-sided exact test at 1e-3
    # sees that almost always; untrimmed, the burst's 15 errors leave 33 against 18.
    rng = np.random.default_rng(11)
    e_c, n_c, e_b, n_b = _tracks(rng, 0.011, 0.001)
    e_b = _burst(e_b, rng)
    robust, _, _ = robust_count_test(e_c, n_c, e_b, n_b, "greater")
    plain, _ = fisher_exact(e_c.sum(axis=1), n_c.sum(axis=1), e_b.sum(axis=1), n_b.sum(axis=1),
                            "greater")  # fmt: skip
    assert np.mean(robust <= 1e-3) >= 0.9
    assert np.mean(plain <= 1e-3) < 0.5


def test_overdispersion_between_intervals_is_corrected_not_trimmed_away() -> None:
    # Every interval's ratio times a gamma of CV 1: 6 errors an interval on average, variance
    # 6 + 6^2, a design effect phi = 1 + 6 = 7. Uncorrected, an exact test at 1% rejects when
    # a z of sd sqrt(7) passes 2.33: P(Z > 2.33 / 2.65) = 19% of A/A runs. Corrected, the
    # level holds.
    rng = np.random.default_rng(3)
    n = np.full((RUNS, K), 3000.0)
    gamma = rng.gamma(1.0, 1.0, size=(RUNS, 2, K))
    e_c = rng.binomial(3000, np.clip(0.002 * gamma[:, 0], 0, 1)).astype(float)
    e_b = rng.binomial(3000, np.clip(0.002 * gamma[:, 1], 0, 1)).astype(float)
    plain, _ = fisher_exact(e_c.sum(axis=1), n.sum(axis=1), e_b.sum(axis=1), n.sum(axis=1),
                            "greater")  # fmt: skip
    robust, _, phi = robust_count_test(e_c, n, e_b, n.copy(), "greater")
    assert 0.15 < np.mean(plain <= 0.01) < 0.23
    assert 4.0 < float(np.median(phi)) < 10.0
    assert np.mean(robust <= 0.01) <= _upper(0.01)


def test_robust_is_for_error_ratios_only() -> None:
    with pytest.raises(PolicyError, match="robust is for error_ratio only"):
        MetricPolicy(name="latency", kind="latency", test="robust")


def _step(errors_c: list[float], errors_b: list[float], requests: float = 150.0) -> StepObservation:
    def series(errors: list[float]) -> TrackSeries:
        return TrackSeries({"acme": tuple(Interval(requests, e, ()) for e in errors)})

    return StepObservation((0.1, 1.0), 15.0, series(errors_c), series(errors_b))


def _staging(repo_root: Path) -> JudgePolicy:
    """Staging's policy with its 5xx metric alone, judged by `test: robust`."""
    config = yaml.safe_load((repo_root / "environments" / "delivery.staging.yaml").read_text())
    policy = JudgePolicy.from_mapping(config["judge"]).for_delivery(steps=3, max_extensions=2)
    errors = next(m for m in policy.metrics if m.kind == "error_ratio")
    return replace(policy, metrics=(replace(errors, test="robust"),))


def test_judge_a_single_burst_on_the_canary_does_not_fail_the_step(repo_root: Path) -> None:
    calm = [0.0, 0.0, 1.0, 0.0] * 5
    burst = calm.copy()
    burst[7] = 15.0  # one 15 s interval at 10% 5xx
    verdict = judge(_step(burst, calm), _staging(repo_root))
    assert verdict.outcome != "fail", verdict.reasons


def test_judge_fails_five_points_within_a_minute(repo_root: Path) -> None:
    # +5 pp from the start: about 7.5 errors an interval against none; four intervals.
    verdict = judge(_step([8.0, 7.0, 8.0, 7.0], [0.0, 0.0, 1.0, 0.0]), _staging(repo_root),
                    interim=True)  # fmt: skip
    assert verdict.outcome == "fail", verdict.reasons
