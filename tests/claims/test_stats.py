"""Units, p-values, intervals and corrections against known values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from mitest.claims import stats


def test_the_test_is_the_t_test_on_symmetric_data():
    x = np.array([-1.0, 1.0, 2.0, 4.0, -2.0, 3.0, 0.5, -0.5])
    symmetric = np.concatenate([x, -x]) + 0.7
    expected = sps.ttest_1samp(symmetric, 0.0, alternative="greater").pvalue
    assert stats.mean_test(symmetric, "greater").pvalue == pytest.approx(expected)


def test_p_values_move_monotonically_with_the_effect():
    """Regression: Johnson's non-monotone correction gave p = 1 to an obviously refuted claim."""
    rng = np.random.default_rng(0)
    noise = rng.lognormal(0, 0.4, 40)
    p_less = [stats.mean_test(noise - noise.mean() + shift, "less").pvalue for shift in np.linspace(-2, 0.5, 26)]
    assert all(a <= b + 1e-12 for a, b in zip(p_less, p_less[1:], strict=False))
    assert p_less[0] < 1e-10


def test_units_of_clusters_keep_the_prompt_weighted_mean():
    values = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
    groups = ["a", "a", "a", "b", "b"]
    u = stats.units(values, groups)
    assert len(u) == 2 and u.mean() == pytest.approx(values.mean())


def test_degenerate_units_get_the_sign_test_p_value_unless_exact():
    """All-equal units carry no spread: the evidence left is the sign test's 0.5**m, not p = 0."""
    assert stats.mean_test(np.full(5, 0.3), "greater").pvalue == 0.5**5
    assert stats.mean_test(np.full(5, 0.3), "greater", exact=True).pvalue == 0.0
    assert stats.mean_test(np.full(5, 0.3), "less").pvalue == 1.0
    assert stats.mean_test(np.zeros(5), "greater").pvalue == 1.0
    ci = stats.ratio_interval(np.full(8, 2.0), np.ones(8), level=0.9)
    assert (ci.low, ci.high) == (2.0, 2.0)
    with pytest.raises(ValueError, match="at least 2"):
        stats.mean_test(np.array([1.0]))


def test_ratio_interval_is_seeded_and_contains_the_estimate():
    rng = np.random.default_rng(1)
    num, den = rng.normal(2, 1, 50), rng.normal(4, 1, 50)
    a = stats.ratio_interval(num, den, level=0.9, seed=3)
    assert a == stats.ratio_interval(num, den, level=0.9, seed=3)
    assert a.low < num.sum() / den.sum() < a.high


def test_clustered_intervals_are_wider_than_naive_ones_for_clustered_data():
    rng = np.random.default_rng(2)
    values = (rng.normal(size=(8, 1)) + 0.2 * rng.normal(size=(8, 10))).ravel()
    groups = np.repeat(np.arange(8), 10)
    naive = stats.ratio_interval(values, np.ones(80), level=0.9)
    clustered = stats.ratio_interval(values, np.ones(80), level=0.9, groups=groups)
    assert clustered.high - clustered.low > 2 * (naive.high - naive.low)


def test_holm_and_benjamini_hochberg_known_values():
    p = [0.01, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(stats.holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(stats.benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(stats.bonferroni(p), [0.04, 0.16, 0.12, 0.02])


def test_resample_counts_reach_the_smallest_threshold_or_warn():
    assert stats.resamples_for(0.05) == 2000
    assert stats.resamples_for(0.001) == 50_000
    with pytest.warns(stats.ResampleWarning, match="approximate"):
        assert stats.resamples_for(1e-5) == stats.MAX_RESAMPLES


def test_binomial_and_wilson_match_scipy():
    assert stats.binomial_test(14, 20, 0.5, "greater").pvalue == pytest.approx(
        sps.binomtest(14, 20, 0.5, alternative="greater").pvalue
    )
    ci = stats.wilson_interval(14, 20, 0.9)
    assert ci.low < 0.7 < ci.high
