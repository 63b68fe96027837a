"""Level claims on readings: the one-sample mean test of every mean claim, on value - threshold."""

from __future__ import annotations

import numpy as np
import pytest

import mitest as mt
from mitest.claims import stats
from mitest.claims.levels import Level, expect_levels, reading


def _reading(values):
    return reading(np.asarray(values, dtype=float), metric="score")


def test_the_p_values_are_the_mean_tests_on_value_minus_threshold():
    values = np.random.default_rng(0).normal(0.6, 0.1, 40)
    verdict = expect_levels([Level(_reading(values), 0.55)], claim="score at least 0.55")
    decision = stats.decide(np.sort(values - 0.55), alpha=0.05)
    assert verdict.pvalue == pytest.approx(float(decision.p_holds))
    assert verdict.estimate == pytest.approx(values.mean()) and verdict.test == "skew-adjusted paired t"


def test_holds_refuted_and_inconclusive():
    rng = np.random.default_rng(1)
    high, low = _reading(rng.normal(0.8, 0.05, 40)), _reading(rng.normal(0.2, 0.05, 40))
    assert expect_levels([Level(high, 0.5)], claim="high").outcome == mt.HOLDS
    assert expect_levels([Level(low, 0.5, above=False)], claim="low").outcome == mt.HOLDS
    with pytest.raises(mt.ClaimRefuted):
        expect_levels([Level(low, 0.5)], claim="low is high")
    with pytest.raises(mt.ClaimInconclusive, match="below the 29"):
        expect_levels([Level(_reading(rng.normal(0.8, 0.05, 10)), 0.5)], claim="too few")


def test_parts_are_holm_adjusted_and_one_failing_part_fails_the_claim():
    rng = np.random.default_rng(2)
    parts = [Level(_reading(rng.normal(0.8, 0.05, 40)), 0.5, label=f"h{i}") for i in range(3)]
    assert expect_levels(parts, claim="all high").test.endswith("Holm over 3")
    near = Level(_reading(rng.normal(0.51, 0.2, 40)), 0.5, label="near")
    with pytest.raises(mt.ClaimInconclusive) as failed:
        expect_levels([*parts, near], claim="all high")
    assert failed.value.verdict.notes[0].startswith("near:")


def test_false_holds_under_a_null_at_the_threshold_stay_at_alpha():
    """Values whose true mean is the threshold: the decision the level claim uses HOLDS at most alpha + 2 SE."""
    rng = np.random.default_rng(3)
    sims, n, alpha = 20_000, 40, 0.05
    values = rng.normal(0.5, 0.1, (sims, n))
    decision = stats.decide(values - 0.5, alpha=alpha)
    rate = float(((decision.p_holds < alpha) & ~decision.short_holds).mean())
    assert rate <= alpha + 2 * (alpha * (1 - alpha) / sims) ** 0.5, rate


def test_thresholds_must_be_finite():
    with pytest.raises(mt.MitestError, match="finite"):
        Level(_reading([0.1, 0.2]), float("nan"))
