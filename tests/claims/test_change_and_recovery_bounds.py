"""Two-sided change claims and recovery upper bounds (issue 18): calibration by simulation, power, errors.

The null checks run the public claims on ``Effect.from_values`` (2,000 simulations per setting, fixed
seeds) with the truth exactly at the boundary, and assert the false-HOLDS rate stays within alpha
plus two Monte-Carlo standard errors.
"""

from __future__ import annotations

import numpy as np
import pytest

import mitest as mt
from mitest.claims import stats
from mitest.claims.decide import either

ALPHA = 0.05
SIMS = 2000
TOLERANCE = ALPHA + 2 * np.sqrt(ALPHA * (1 - ALPHA) / SIMS)  # 0.0597


def _outcomes(claim, effects) -> dict[str, float]:
    counts = {"HOLDS": 0, "REFUTED": 0, "INCONCLUSIVE": 0}
    for effect in effects:
        try:
            counts[claim(effect).outcome] += 1
        except (mt.ClaimRefuted, mt.ClaimInconclusive) as failure:
            counts[failure.verdict.outcome] += 1
    return {k: v / len(effects) for k, v in counts.items()}


def _changes(mean: float, n: int, sims: int, seed: int) -> list[mt.Effect]:
    rng = np.random.default_rng(seed)
    clean = rng.normal(2.0, 1.0, (sims, n))
    return [mt.Effect.from_values(c, c + mean + rng.normal(size=n)) for c in clean]


@pytest.mark.slow
@pytest.mark.parametrize("boundary", [0.5, -0.5])
def test_change_at_the_boundary_rarely_holds_or_is_refuted(boundary):
    rates = _outcomes(lambda e: e.expect_change(at_least=0.5), _changes(boundary, 40, SIMS, seed=181))
    assert rates["HOLDS"] <= TOLERANCE
    assert rates["REFUTED"] <= TOLERANCE


@pytest.mark.slow
def test_recovery_at_most_is_calibrated_at_its_threshold():
    rng = np.random.default_rng(182)
    n, r = 40, 0.2
    effects = []
    for _ in range(SIMS):
        base = rng.normal(0.0, 1.0, n)
        gap = 2.0 + 0.5 * rng.normal(size=n)
        recovered = r * gap + 0.4 * rng.standard_t(3, n)  # true ratio of means exactly r
        effects.append(mt.Effect.from_values(base + gap, base + recovered, corrupted=base))
    rates = _outcomes(lambda e: e.expect_recovery(at_most=r), effects)
    assert rates["HOLDS"] <= TOLERANCE
    assert rates["REFUTED"] <= TOLERANCE


def _lognormal_against(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return -(rng.lognormal(0, 0.5, shape) - np.exp(0.125))


@pytest.mark.parametrize("n", [30, 100])
def test_change_procedure_is_calibrated_on_skewed_changes(n):
    """The rule expect_change uses (both directions at alpha / 2, either()), vectorised, lognormal tail against."""
    rng = np.random.default_rng(n + 183)
    delta = 0.5 + _lognormal_against(rng, (4000, n))  # true mean change exactly +0.5
    up, down = stats.decide(delta - 0.5, alpha=ALPHA / 2), stats.decide(-delta - 0.5, alpha=ALPHA / 2)
    decision = either(up, down)
    holds = (decision.p_holds < ALPHA) & ~decision.short_holds
    assert float(holds.mean()) <= ALPHA + 2 * np.sqrt(ALPHA * (1 - ALPHA) / 4000)


def test_change_power_on_a_planted_effect_matches_the_reported_power():
    effects = _changes(-0.9, 40, 300, seed=184)  # a decrease of 0.9 against a threshold of 0.5
    powers, held = [], 0
    for effect in effects:
        try:
            verdict = effect.expect_change(at_least=0.5)
            held += 1
        except (mt.ClaimRefuted, mt.ClaimInconclusive) as failure:
            verdict = failure.verdict
        powers.append(verdict.power)
    rate = held / len(effects)
    assert 0.6 < rate < 0.95
    assert abs(rate - float(np.mean(powers))) < 0.1


def test_recovery_at_most_holds_when_little_is_recovered_and_is_refuted_when_much_is():
    rng = np.random.default_rng(185)
    base = rng.normal(size=60)
    clean = base + 2.0 + 0.3 * rng.normal(size=60)
    little = mt.Effect.from_values(clean, base + 0.1 * (clean - base), corrupted=base)
    assert little.expect_recovery(at_most=0.3).estimate == pytest.approx(0.1)
    much = mt.Effect.from_values(clean, base + 0.8 * (clean - base) + 0.05 * rng.normal(size=60), corrupted=base)
    with pytest.raises(mt.ClaimRefuted, match="recovers at most 0.3"):
        much.expect_recovery(at_most=0.3)
    assert much.expect_recovery(at_least=0.5).holds


def test_change_reads_either_direction_and_refutes_a_small_change():
    rng = np.random.default_rng(186)
    clean = rng.normal(size=50)
    for shift in (1.0, -1.0):
        verdict = mt.Effect.from_values(clean, clean + shift + 0.2 * rng.normal(size=50)).expect_change(at_least=0.5)
        assert verdict.estimate == pytest.approx(1.0, abs=0.1)
        assert verdict.level == pytest.approx(1 - ALPHA)
    with pytest.raises(mt.ClaimRefuted):
        mt.Effect.from_values(clean, clean + 0.05 * rng.normal(size=50)).expect_change(at_least=0.5)


def test_a_constant_change_gets_a_clear_answer():
    assert mt.Effect.from_values(np.zeros(40), np.full(40, -2.0)).expect_change(at_least=1.0).holds
    with pytest.raises(mt.ClaimRefuted):
        mt.Effect.from_values(np.zeros(40), np.full(40, 0.5)).expect_change(at_least=1.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda e: e.expect_recovery(), "exactly one bound"),
        (lambda e: e.expect_recovery(at_least=0.5, at_most=0.9), "exactly one bound"),
        (lambda e: e.expect_recovery(at_most=float("nan")), "at_most must be a finite"),
        (lambda e: e.expect_change(at_least=-1.0), "at_least >= 0"),
        (lambda e: e.expect_change("1"), "at_least must be a number, got str"),  # found by review: numpy TypeError
        (lambda e: e.expect_increase(at_least=None), "at_least must be a number"),
    ],
)
def test_bad_bounds_are_clear_errors(call, message):
    effect = mt.Effect.from_values(np.arange(40.0), np.arange(40.0) + 1, corrupted=np.arange(40.0) - 3)
    with pytest.raises(mt.MitestError, match=message):
        call(effect)
