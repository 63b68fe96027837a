"""Welch's two-sample test: against scipy, and calibrated at the boundary by simulation (fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from mitest.claims import stats


def test_matches_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.5, 1.0, 30), rng.normal(0.0, 2.0, 45)
    ours = stats.welch_test(a, b, 0.2, "greater")
    theirs = sps.ttest_ind(a - 0.2, b, equal_var=False, alternative="greater")
    assert ours.pvalue == pytest.approx(theirs.pvalue, rel=1e-10)
    assert ours.statistic == pytest.approx(theirs.statistic, rel=1e-10)
    interval = stats.welch_interval(a, b, level=0.9)
    ci = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.9)
    assert (interval.low, interval.high) == pytest.approx((ci.low, ci.high), rel=1e-10)


def test_samples_without_spread_get_the_sign_test():
    result = stats.welch_test(np.ones(3), np.zeros(4), 0.5, "greater")
    assert result.pvalue == 0.5**7 and stats.welch_test(np.ones(3), np.zeros(4), 0.5, "less").pvalue == 1.0


@pytest.mark.parametrize(
    ("na", "nb", "sd_a", "sd_b"), [(30, 30, 1.0, 1.0), (30, 90, 1.0, 4.0), (90, 30, 1.0, 4.0), (40, 40, 0.2, 3.0)]
)
def test_false_holds_at_the_boundary_stay_at_alpha(na, nb, sd_a, sd_b):
    """True difference exactly at the threshold, unequal sizes and variances: P(HOLDS) <= alpha + 2 SE,
    and about alpha (the test is not needlessly conservative)."""
    rng = np.random.default_rng(na * 1000 + nb)
    sims, alpha, d = 20_000, 0.05, 0.5
    a = rng.normal(d, sd_a, (sims, na))
    b = rng.normal(0.0, sd_b, (sims, nb))
    rate = float((stats.welch_test(a, b, d, "greater").pvalue < alpha).mean())
    se = (alpha * (1 - alpha) / sims) ** 0.5
    assert 0.04 < rate <= alpha + 2 * se, rate


def test_power_on_a_planted_gap():
    rng = np.random.default_rng(7)
    a, b = rng.normal(1.0, 1.0, (4000, 40)), rng.normal(0.0, 1.0, (4000, 40))
    held = float((stats.welch_test(a, b, 0.3, "greater").pvalue < 0.05).mean())
    assert held > 0.9  # gap 0.7 at se 0.22: noncentrality 3.1, power about 0.95


def test_the_two_sample_claim_on_planted_values():
    """HOLDS well above the threshold, REFUTED well below."""
    from mitest.claims.levels import expect_difference
    from mitest.errors import ClaimRefuted

    rng = np.random.default_rng(0)
    a, b = rng.normal(2.0, 1.0, 40), rng.normal(0.0, 1.5, 60)
    verdict = expect_difference(a, b, 1.0, claim="a above b", metric="x")
    assert verdict.outcome == "HOLDS" and verdict.estimate == pytest.approx(a.mean() - b.mean())
    with pytest.raises(ClaimRefuted):
        expect_difference(a, b, 3.5, claim="a far above b", metric="x")
