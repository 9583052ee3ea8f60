"""The judge's statistics agree with scipy's reference implementations."""

import numpy as np
import pytest
from delivery.judge_stats import (
    adjust_p_values,
    count_dispersion,
    fisher_exact,
    histogram_quantile,
    mann_whitney_from_counts,
    mann_whitney_rows,
    quantile_interval,
    quasi_p_values,
    rank_dispersion,
    requests_for_power,
    shared_dispersion,
    split_p_values,
    tarone_testable,
)
from scipy import stats


def _expand(counts: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(counts.size, dtype=float), counts.astype(int))


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_mann_whitney_from_counts_equals_scipy_on_expanded_samples(alternative: str) -> None:
    rng = np.random.default_rng(7)
    canary = rng.integers(0, 40, size=(6, 13)).astype(float)
    baseline = rng.integers(0, 40, size=(6, 13)).astype(float)
    canary[2, 8:] += 30  # one row with a real shift
    u, p = mann_whitney_from_counts(canary, baseline, alternative)  # type: ignore[arg-type]
    for i in range(canary.shape[0]):
        ref = stats.mannwhitneyu(  # type: ignore[call-overload]
            _expand(canary[i]),
            _expand(baseline[i]),
            alternative=alternative,
            method="asymptotic",
            use_continuity=True,
        )
        assert u[i] == pytest.approx(ref.statistic)
        assert p[i] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)


def test_mann_whitney_is_blind_to_bucket_representatives() -> None:
    # Rank-based: whatever value stands for a bucket, the same counts give the same p.
    canary = np.array([5.0, 20, 30, 10, 1])
    baseline = np.array([8.0, 25, 25, 4, 0])
    _, p = mann_whitney_from_counts(canary[None], baseline[None], "greater")
    midpoints = np.array([0.001, 0.02, 0.07, 0.3, 2.0])
    ref = stats.mannwhitneyu(
        np.repeat(midpoints, canary.astype(int)),
        np.repeat(midpoints, baseline.astype(int)),
        alternative="greater",
        method="asymptotic",
    )
    assert p[0] == pytest.approx(ref.pvalue)


def test_mann_whitney_empty_side_gives_p_one() -> None:
    _, p = mann_whitney_from_counts(np.zeros((1, 4)), np.ones((1, 4)), "greater")
    assert p[0] == 1.0


TABLES = [(5, 300, 0, 310), (0, 50, 0, 50), (12, 1000, 3, 990), (3, 40, 9, 41)]


def _columns() -> tuple[np.ndarray, ...]:
    return tuple(np.array(col, dtype=float) for col in zip(*TABLES, strict=True))


@pytest.mark.parametrize("alternative", ["greater", "less"])
def test_fisher_exact_one_sided_equals_scipy(alternative: str) -> None:
    ec, nc, eb, nb = _columns()
    p, p_min = fisher_exact(ec, nc, eb, nb, alternative)  # type: ignore[arg-type]
    for i, (a, n1, b, n2) in enumerate(TABLES):
        table = np.array([[a, n1 - a], [b, n2 - b]])
        ref = stats.fisher_exact(table, alternative=alternative)  # type: ignore[arg-type]
        assert p[i] == pytest.approx(ref.pvalue, rel=1e-6)
        assert p_min[i] <= p[i] + 1e-12
    assert p_min[1] == 1.0  # no errors anywhere: no outcome could be significant


def test_fisher_exact_two_sided_doubles_the_smaller_tail() -> None:
    # Doubling is conservative against scipy's "as likely or less likely" rule, never liberal.
    ec, nc, eb, nb = _columns()
    p, _ = fisher_exact(ec, nc, eb, nb, "two-sided")
    greater, _ = fisher_exact(ec, nc, eb, nb, "greater")
    less, _ = fisher_exact(ec, nc, eb, nb, "less")
    assert p == pytest.approx(np.minimum(1.0, 2 * np.minimum(greater, less)))
    for i, (a, n1, b, n2) in enumerate(TABLES):
        ref = stats.fisher_exact(np.array([[a, n1 - a], [b, n2 - b]]), alternative="two-sided")
        assert p[i] >= ref.pvalue - 1e-12


def test_tarone_drops_tests_that_cannot_reach_significance() -> None:
    p_min = np.array([1e-6, 1e-5, 0.2, 0.5, 1.0, 1.0])
    testable = tarone_testable(p_min, 0.01)
    assert testable.tolist() == [True, True, False, False, False, False]
    assert tarone_testable(np.array([]), 0.01).size == 0


def test_holm_and_bh_adjustments() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005])
    holm = adjust_p_values(p, "holm")
    assert holm.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust_p_values(p, "bh") == pytest.approx(stats.false_discovery_control(p))
    assert adjust_p_values(p, "bonferroni") == pytest.approx(np.minimum(1, 4 * p))


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    bounds = np.array([0.1, 0.2, 0.4])
    counts = np.array([[10.0, 10, 20, 0], [0, 0, 0, 5], [0, 0, 0, 0]])
    values = histogram_quantile(counts, bounds, 0.5)
    assert values[0] == pytest.approx(0.2)  # rank 20 = top of the second bucket
    assert values[1] == pytest.approx(0.4)  # +Inf bucket: the highest finite bound
    assert np.isnan(values[2])
    assert histogram_quantile(counts[:1], bounds, 0.75)[0] == pytest.approx(0.3)


def test_quantile_interval_brackets_the_quantile_and_narrows_with_n() -> None:
    bounds = np.array([0.01, 0.02, 0.05, 0.1, 0.2])
    small = np.array([[2.0, 10, 20, 10, 2, 0]])
    big = small * 100
    q = histogram_quantile(small, bounds, 0.5)[0]
    low_s, high_s = quantile_interval(small, bounds, 0.5, 0.95)
    low_b, high_b = quantile_interval(big, bounds, 0.5, 0.95)
    assert low_s[0] <= q <= high_s[0]
    assert high_b[0] - low_b[0] < high_s[0] - low_s[0]


def test_fast_fisher_matches_scipy_on_random_tables() -> None:
    rng = np.random.default_rng(7)
    n_c = rng.integers(1, 3000, 40).astype(float)
    n_b = rng.integers(1, 3000, 40).astype(float)
    e_c = np.minimum(n_c, rng.poisson(rng.uniform(0, 40, 40))).astype(float)
    e_b = np.minimum(n_b, rng.poisson(rng.uniform(0, 40, 40))).astype(float)
    for alternative in ("greater", "less"):
        p, _ = fisher_exact(e_c, n_c, e_b, n_b, alternative)
        expected = [
            stats.fisher_exact(np.array([[a, b - a], [c, d - c]]), alternative=alternative).pvalue
            for a, b, c, d in zip(e_c, n_c, e_b, n_b, strict=True)
        ]
        assert p == pytest.approx(expected, rel=1e-7, abs=1e-12)


def test_count_dispersion_is_one_for_binomial_blocks_and_sees_bursts() -> None:
    rng = np.random.default_rng(3)
    n = np.full((200, 10), 1000.0)
    binomial = rng.binomial(1000, 0.02, size=(200, 10)).astype(float)
    phi, df = count_dispersion(binomial, n, binomial[::-1], n)
    assert float(np.median(phi)) == pytest.approx(1.0, abs=0.15)
    assert set(df.tolist()) == {18.0}
    bursty = binomial.copy()
    bursty[:, 0] += 150.0  # one block in ten with a burst
    phi, _ = count_dispersion(bursty, n, binomial, n)
    assert float(np.median(phi)) > 5.0


def test_rank_dispersion_sees_slow_blocks() -> None:
    rng = np.random.default_rng(4)
    fast = np.array([0.3, 0.4, 0.2, 0.1])
    slow = np.array([0.05, 0.15, 0.4, 0.4])
    calm = rng.multinomial(500, fast, size=(100, 8)).astype(float)
    phi, df = rank_dispersion(calm, rng.multinomial(500, fast, size=(100, 8)).astype(float))
    assert float(np.median(phi)) == pytest.approx(1.0, abs=0.2)
    assert set(df.tolist()) == {14.0}
    spells = calm.copy()
    spells[:, :2] = rng.multinomial(500, slow, size=(100, 2))
    phi, _ = rank_dispersion(spells, calm)
    assert float(np.median(phi)) > 10.0


def test_quasi_p_values_refer_to_t_and_need_degrees_of_freedom() -> None:
    p = np.array([1e-6, 1e-6, 1e-6, 0.5])
    q = quasi_p_values(p, np.array([1.0, 2.0, 2.0, 2.0]), np.array([10.0, 10.0, 4.0, 10.0]))
    assert q[0] == p[0]  # no overdispersion: the exact p stands
    assert q[1] == pytest.approx(float(stats.t.sf(stats.norm.isf(1e-6), 10)))
    assert q[2] == 1.0  # too few degrees of freedom to measure the spread
    assert q[3] >= 0.5


def test_shared_dispersion_gives_tenants_their_share_of_the_aggregates() -> None:
    phi = shared_dispersion(np.array([11.0, 1.0, 3.0]), np.array([1000.0, 500.0, 100.0]))
    assert phi.tolist() == pytest.approx([11.0, 6.0, 3.0])


def test_requests_for_power_matches_the_textbook_and_grows_with_dispersion() -> None:
    n = float(requests_for_power(0.001, 0.01, 0.05, 0.8))
    # Fleiss: (1.645 * sqrt(2 * .0060 * .9940) + 0.8416 * sqrt(.001*.999 + .011*.989))^2 / .01^2
    assert n == pytest.approx(736.5, rel=0.001)
    assert float(requests_for_power(0.001, 0.01, 0.05, 0.8, 3.0)) == pytest.approx(3 * n)
    assert float(requests_for_power(0.01, 0.01, 0.05, 0.8)) > n  # a noisier baseline


def test_split_p_values_flag_a_missing_share_not_noise() -> None:
    p = split_p_values(
        np.array([1000.0, 0.0, 950.0, 2000.0]), np.array([2000.0, 1000.0, 1000.0, 1000.0]), 0.2
    )
    assert p[0] < 1e-30  # half the canary's traffic is missing
    assert p[1] < 1e-100  # a tenant the canary does not serve
    assert p[2] == 1.0  # 5% short: within the tolerance
    assert p[3] < 1e-30  # the baseline's traffic is missing


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
def test_mann_whitney_rows_match_scipy_with_ties_and_gaps(alternative: str) -> None:
    rng = np.random.default_rng(11)
    x = rng.integers(0, 4, (30, 12)) / 10.0
    y = rng.integers(0, 4, (30, 12)) / 10.0
    x_valid = rng.random((30, 12)) < 0.8
    y_valid = rng.random((30, 12)) < 0.8
    p, p_min = mann_whitney_rows(x, x_valid, y, y_valid, alternative)  # type: ignore[arg-type]
    for i in range(30):
        a, b = x[i][x_valid[i]], y[i][y_valid[i]]
        expected = stats.mannwhitneyu(  # type: ignore[call-overload]
            a, b, alternative=alternative, method="asymptotic"
        )
        assert p[i] == pytest.approx(expected.pvalue, abs=1e-12)
        assert p_min[i] <= p[i] + 1e-12
