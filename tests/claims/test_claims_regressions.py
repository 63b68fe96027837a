"""Regression tests for claim-layer bugs found in review: each failed before its fix."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

import mitest as mt
from mitest.claims import stats


def _cr1_pvalue(values, groups, threshold):
    """Cluster-robust (CR1) one-sided p-value of mean(values) > threshold, written out by hand."""
    values, groups = np.asarray(values, float), np.asarray(groups)
    n, labels = len(values), np.unique(groups)
    residual_sums = np.array([(values[groups == g] - values.mean()).sum() for g in labels])
    se = np.sqrt(len(labels) / (len(labels) - 1) * (residual_sums**2).sum()) / n
    return sps.t.sf((values.mean() - threshold) / se, len(labels) - 1)


def test_cluster_units_are_the_cr1_test_for_unequal_cluster_sizes():
    rng = np.random.default_rng(0)
    sizes = [2, 5, 10, 23]
    groups = np.repeat(np.arange(4), sizes)
    deltas = 1.5 + 0.1 * rng.normal(size=sum(sizes)) + np.repeat(rng.normal(0, 0.05, 4), sizes)
    u = stats.units(deltas - 1.0, groups)
    t = u.mean() / (u.std(ddof=1) / np.sqrt(len(u)))
    assert sps.t.sf(t, 3) == pytest.approx(_cr1_pvalue(deltas, groups, 1.0))
    effect = mt.Effect.from_values(np.zeros(len(deltas)), deltas, groups=groups)
    assert effect.expect_increase(at_least=1.0).holds


def test_all_equal_changes_in_unequal_clusters_are_not_decided_exactly():
    """Issue 14, defect 1: two clusters of equal changes are two units, not noise-free data."""
    groups = [0] * 10 + [1] * 30
    effect = mt.Effect.from_values(np.zeros(40), np.full(40, 2.0), groups=groups)
    with pytest.raises(mt.ClaimInconclusive) as caught:
        effect.expect_increase(at_least=1.0)
    assert caught.value.verdict.pvalue == 0.25
    flips = mt.Effect.from_values(np.zeros(40), np.zeros(40), groups=groups, flipped=np.ones(40, bool))
    with pytest.raises(mt.ClaimInconclusive):
        flips.expect_flip_rate(at_least=0.5)


@pytest.mark.parametrize("scale", [1e-12, 1e-20])
def test_tiny_metric_values_are_tested_not_treated_as_equal(scale):
    noise = np.random.default_rng(1).normal(size=30)
    noise -= noise.mean() - 0.01
    effect = mt.Effect.from_values(np.zeros(30), noise * scale)
    with pytest.raises(mt.ClaimInconclusive):
        effect.expect_increase(at_least=0.0)


@pytest.mark.parametrize("d", [0.1, 0.2, 0.3, 0.7])
def test_a_change_exactly_at_the_threshold_is_not_evidence_either_way(d):
    clean = np.random.default_rng(2).normal(3, 1, 20)
    with pytest.raises(mt.ClaimInconclusive):
        mt.Effect.from_values(clean, clean + d).expect_increase(at_least=d)
    with pytest.raises(mt.ClaimInconclusive):
        mt.Effect.from_values(clean, clean * 0.4).expect_decrease(at_least=0.6, relative=True)


def test_near_zero_gaps_do_not_crash_the_power_advice():
    assert stats.units_needed(1e-12, 1.0, 0.05) is None
    effect = mt.Effect.from_values(np.zeros(5), [0.1, 0.2, -0.3, 0.05, -0.05])
    with pytest.raises(mt.ClaimInconclusive):
        effect.expect_increase(at_least=0.0)
    flat = [mt.Effect.from_values(np.zeros(6), v) for v in ([1, 2, 3, 1, 3, 2], [2, 3, 1, 1, 2, 3], [3, 1, 2, 1, 1, 1])]
    with pytest.raises(mt.ClaimInconclusive):
        mt.expect_monotonic(flat)


def test_equivalence_advice_uses_the_distance_to_the_nearer_margin():
    noise = np.random.default_rng(3).normal(0, 2, 15)
    effect = mt.Effect.from_values(np.zeros(15), noise - noise.mean() - 0.15)
    with pytest.raises(mt.ClaimInconclusive) as caught:
        effect.expect_no_change(within=0.2)
    verdict = caught.value.verdict
    assert verdict.gap == pytest.approx(0.05)
    assert verdict.n_needed > 15 and verdict.power < 0.5


def test_an_interval_that_cannot_be_computed_is_unbounded_not_a_point():
    ci = stats.ratio_interval(np.array([1.0, 2, 3, 4]), np.array([1.0, -1, 1, 0.2]), level=0.9)
    assert (ci.low, ci.high) == (-np.inf, np.inf)


def test_non_finite_values_and_thresholds_are_errors():
    with pytest.raises(mt.MitestError, match="finite"):
        mt.Effect(clean=np.zeros(3), intervened=np.array([0.0, np.nan, 1.0]))
    effect = mt.Effect.from_values([1.0, 2, 3], [0.0, 0.5, 1.0], corrupted=[0.0, 0.1, 0.0])
    with pytest.raises(mt.MitestError, match="finite"):
        effect.expect_recovery(at_least=float("nan"))


def test_huge_values_give_finite_p_values():
    for values in ([-1e200, 1e200, 2e200], list(np.random.default_rng(4).normal(0, 1e120, 10))):
        effect = mt.Effect.from_values(np.zeros(len(values)), values)
        with pytest.raises((mt.ClaimInconclusive, mt.ClaimRefuted)) as caught:
            effect.expect_increase(at_least=1e300)
        assert np.isfinite(caught.value.verdict.pvalue)


def test_intervals_do_not_depend_on_prompt_order():
    rng = np.random.default_rng(5)
    clean, delta = rng.normal(size=40), rng.normal(1, 1, 40)
    order = rng.permutation(40)
    a = mt.Effect.from_values(clean, clean + delta).expect_increase(at_least=0.2)
    b = mt.Effect.from_values(clean[order], (clean + delta)[order]).expect_increase(at_least=0.2)
    assert (a.low, a.high) == (b.low, b.high)


def test_group_labels_keep_their_types():
    assert stats.cluster_codes([1, "1", 2, 2.0])[1] == 3  # 2 == 2.0 in Python; 1 != "1"


def test_monotonic_needs_the_same_groups():
    a = mt.Effect.from_values(np.zeros(4), [1.0, 2, 3, 4], groups=[0, 0, 1, 1])
    b = mt.Effect.from_values(np.zeros(4), [2.0, 3, 4, 5], groups=[0, 1, 0, 1])
    with pytest.raises(mt.MitestError, match="groups differ"):
        mt.expect_monotonic([a, b])


def test_an_invalid_suite_alpha_is_an_error():
    try:
        mt.settings.alpha = 0.7
        with pytest.raises(ValueError, match="settings.alpha"):
            mt.Effect.from_values(np.zeros(5), np.ones(5)).expect_increase(at_least=0.5)
    finally:
        mt.settings.alpha = 0.05


def test_a_high_confidence_level_is_not_printed_as_100_percent():
    """At a family-wise alpha of 0.05 / 23 the interval's level, 99.57%, prints as 99.6%, not 100%."""
    rng = np.random.default_rng(0)
    clean = rng.normal(size=60)
    verdict = mt.Effect.from_values(clean, clean + 2.0 + rng.normal(size=60)).expect_increase(
        at_least=0.5, alpha=0.05 / 23
    )
    assert "99.6% CI" in verdict.summary() and "100% CI" not in verdict.summary()


@pytest.mark.parametrize("label", [None, float("nan"), [1], {"a": 1}])
def test_group_labels_from_values_must_be_present_and_hashable(label):
    with pytest.raises(mt.MitestError, match=r"groups\[1\] is .*hashable label"):
        mt.Effect.from_values([1.0, 2.0, 3.0], [1.0, 2.5, 3.0], groups=["a", label, "b"])
