"""Issue 14: verdicts calibrated on the data interpretability produces. One test (or more) per defect.

Every simulation is seeded and vectorised through the functions the claims call
(:func:`mitest.claims.stats.decide`, :func:`~mitest.claims.stats.cluster_test`, :func:`~mitest.claims.stats.rate_test`);
``test_the_claims_use_the_vectorised_procedure`` ties those to the public API. Tolerance: alpha plus
three Monte-Carlo standard errors.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

import mitest as mt
from mitest.claims import stats

ALPHA = 0.05


def _tolerance(sims: int, alpha: float = ALPHA) -> float:
    return alpha + 3 * np.sqrt(alpha * (1 - alpha) / sims)


def _holds_rate(margins: np.ndarray, groups=None, alpha: float = ALPHA) -> float:
    """Share of simulated claims 'mean(margin) > 0' the claim procedure declares HOLDS."""
    decision = stats.decide(margins, groups, alpha=alpha)
    return float(((decision.p_holds < alpha) & ~decision.short_holds).mean())


def _outcome(claim) -> mt.Verdict:
    try:
        return claim()
    except (mt.ClaimInconclusive, mt.ClaimRefuted) as caught:
        return caught.verdict


def _mixture(rng: np.random.Generator, shape, share: float = 0.1) -> np.ndarray:
    """Mean-zero changes that hold on most prompts and fail badly on ``share`` of them."""
    fails = rng.random(shape) < share
    return np.where(fails, -(1 - share) / share, 1.0) + 0.3 * rng.normal(size=shape)


# -- 1. discrete data decided "exactly" ---------------------------------------------------------


def test_equal_cluster_means_are_two_units_not_noise_free_data():
    effect = mt.Effect.from_values(np.zeros(4), [0.2, 1, 1, 0.2], groups=list("aabb"))
    verdict = _outcome(lambda: effect.expect_increase(at_least=0.5))
    assert verdict.outcome == mt.INCONCLUSIVE and verdict.pvalue == 0.25


def test_grouped_flip_rate_with_every_prompt_flipped_is_not_p_zero():
    groups = np.repeat(np.arange(5), 8)
    effect = mt.Effect.from_values(np.zeros(40), np.zeros(40), groups=groups, flipped=np.ones(40, bool))
    verdict = _outcome(lambda: effect.expect_flip_rate(at_least=0.9))
    assert verdict.outcome == mt.INCONCLUSIVE
    assert verdict.pvalue == pytest.approx(0.9**5)  # five all-or-nothing clusters, all flipped


def test_monotonic_with_two_prompts_is_not_decided():
    doses = [mt.Effect.from_values(np.zeros(2), values) for values in ([0.0, 0.0], [1.0, 1.0])]
    verdict = _outcome(lambda: mt.expect_monotonic(doses))
    assert verdict.outcome == mt.INCONCLUSIVE and verdict.pvalue > 0
    assert any("below the 29 needed" in note for note in verdict.notes)


@pytest.mark.parametrize("n", [2, 3])
def test_monotonic_under_the_null_with_two_doses_and_few_prompts(n):
    rng = np.random.default_rng(n)
    clean = np.zeros(n)
    holds = 0
    for _ in range(300):
        doses = [mt.Effect.from_values(clean, rng.normal(size=n)) for _ in range(2)]
        holds += _outcome(lambda doses=doses: mt.expect_monotonic(doses)).holds
    assert holds / 300 <= _tolerance(300)


@pytest.mark.parametrize("n", [8, 30])
def test_two_point_changes_are_calibrated(n):
    """80/20 two-point changes with mean 0: at n = 8 all prompts are equal 17% of the time."""
    rng = np.random.default_rng(80 + n)
    margins = np.where(rng.random((4000, n)) < 0.8, 1.0, -4.0)
    assert _holds_rate(margins) <= _tolerance(4000)


# -- 2. grouped flip rates near 1 ---------------------------------------------------------------


def _beta_binomial_flips(rng, sims, clusters, size, rate, icc):
    """0/1 flips in clusters whose flip probability is Beta with mean ``rate`` and correlation ``icc``."""
    total = 1 / icc - 1
    p = rng.beta(rate * total, (1 - rate) * total, size=(sims, clusters, 1))
    return (rng.random((sims, clusters, size)) < p).reshape(sims, -1).astype(float)


@pytest.mark.parametrize(("clusters", "icc"), [(4, 0.8), (8, 0.3), (20, 0.8), (20, 0.3)])
def test_grouped_flip_rates_near_one_are_calibrated(clusters, icc):
    rng = np.random.default_rng(clusters + int(10 * icc))
    flips = _beta_binomial_flips(rng, 4000, clusters, 8, 0.9, icc)
    groups = np.repeat(np.arange(clusters), 8)
    p = stats.rate_test(flips, groups, 0.9, "greater").pvalue
    assert float((p < ALPHA).mean()) <= _tolerance(4000)
    units = np.stack([stats.units(row - 0.9, groups) for row in flips])
    old = stats.mean_test(units, "greater", exact=True).pvalue  # the t-test on cluster units: liberal here
    assert float((old < ALPHA).mean()) > _tolerance(4000)


def test_grouped_flip_rate_still_has_power_with_many_clusters():
    rng = np.random.default_rng(5)
    flips = _beta_binomial_flips(rng, 2000, 40, 8, 0.7, 0.3)
    p = stats.rate_test(flips, np.repeat(np.arange(40), 8), 0.5, "greater").pvalue
    assert float((p < ALPHA).mean()) > 0.8


# -- 3. CR2 with Bell-McCaffrey degrees of freedom ------------------------------------------------


def _bell_mccaffrey_by_matrices(sizes, rho=0.0):
    """Satterthwaite df of the CR2 test of a mean by the general formulas (Bell-McCaffrey 2002; Imbens-Kolesar 2016).

    Working covariance ``(1 - rho) I + rho * blockdiag(J)``; ``rho = 0`` is working independence.
    """
    n = sum(sizes)
    x = np.ones((n, 1))
    bread = np.linalg.inv(x.T @ x)
    hat = x @ bread @ x.T
    bounds = np.cumsum([0, *sizes])
    omega = (1 - rho) * np.eye(n)
    columns = []
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        omega[start:stop, start:stop] += rho
        block = np.eye(stop - start) - hat[start:stop, start:stop]
        values, vectors = np.linalg.eigh(block)
        adjust = vectors @ np.diag(values**-0.5) @ vectors.T
        columns.append((np.eye(n) - hat)[:, start:stop] @ adjust @ x[start:stop] @ bread)
    g = np.hstack(columns)
    m = g.T @ omega @ g
    return np.trace(m) ** 2 / np.trace(m @ m)


@pytest.mark.parametrize("sizes", [[5, 5, 5, 5], [2, 4, 8, 16], [1, 3, 10, 30, 2, 7], [3] * 9 + [40]])
def test_bell_mccaffrey_df_equals_the_matrix_formula(sizes):
    share = np.array(sizes) / sum(sizes)
    assert stats.bell_mccaffrey_df(share) == pytest.approx(_bell_mccaffrey_by_matrices(sizes), rel=1e-10)


@pytest.mark.parametrize("sizes", [[2, 4, 8, 16], [1, 1, 2, 3, 6, 12, 25, 50]])
def test_imbens_kolesar_df_equals_the_matrix_formula_at_the_estimated_correlation(sizes):
    rng = np.random.default_rng(len(sizes))
    codes = np.repeat(np.arange(len(sizes)), sizes)
    values = np.repeat(rng.normal(size=len(sizes)), sizes) + 0.5 * rng.normal(size=sum(sizes))
    rho = float(stats.intracluster_correlation(values, codes, len(sizes)))
    assert 0.3 < rho < 0.99
    expected = _bell_mccaffrey_by_matrices(sizes, rho)
    assert stats.imbens_kolesar_df(values, codes, len(sizes)) == pytest.approx(expected, rel=1e-10)
    assert expected < stats.bell_mccaffrey_df(np.array(sizes) / sum(sizes))  # correlation leaves fewer df


def test_bell_mccaffrey_df_is_g_minus_1_for_equal_clusters_and_fewer_for_unequal():
    assert stats.bell_mccaffrey_df(np.full(7, 1 / 7)) == pytest.approx(6)
    assert stats.bell_mccaffrey_df(np.array([2, 4, 8, 16]) / 30) < 2
    values = np.random.default_rng(0).normal(size=(3, 35))
    equal = np.repeat(np.arange(7), 5)
    np.testing.assert_allclose(stats.imbens_kolesar_df(values, equal, 7), 6.0)


def test_cr2_standard_error_equals_the_adjusted_sandwich():
    rng = np.random.default_rng(0)
    sizes = [2, 4, 8, 16]
    groups = np.repeat(np.arange(4), sizes)
    values = rng.normal(size=30) + 0.3
    n, residual = 30, values - values.mean()
    meat = 0.0
    for g in range(4):
        block = np.eye(sizes[g]) - np.full((sizes[g], sizes[g]), 1 / n)
        w, v = np.linalg.eigh(block)
        adjusted = v @ np.diag(w**-0.5) @ v.T @ residual[groups == g]
        meat += adjusted.sum() ** 2
    t = values.mean() / (np.sqrt(meat) / n)
    result = stats.cluster_test(values, groups, "greater")
    assert result.statistic == pytest.approx(t) and result.df == pytest.approx(
        stats.bell_mccaffrey_df(np.array(sizes) / n)
    )


def _clustered(rng, sims, sizes, icc):
    effects = rng.normal(0, np.sqrt(icc), (sims, len(sizes)))
    return np.repeat(effects, sizes, axis=1) + rng.normal(0, np.sqrt(1 - icc), (sims, sum(sizes)))


@pytest.mark.parametrize(
    ("sizes", "icc"), [([2, 4, 8, 16], 0.3), ([2, 4, 8, 16], 0.8), ([1, 1, 2, 3, 6, 12, 25, 50], 0.8)]
)
def test_few_unequal_clusters_are_calibrated_with_cr2_where_cr1_is_liberal(sizes, icc):
    rng = np.random.default_rng(len(sizes) + int(10 * icc))
    values = _clustered(rng, 6000, sizes, icc)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    cr2 = stats.cluster_test(values, groups, "greater").pvalue
    assert float((cr2 < ALPHA).mean()) <= _tolerance(6000)
    cr1 = stats.mean_test(np.stack([stats.units(v, groups) for v in values]), "greater").pvalue
    assert float((cr1 < ALPHA).mean()) > float((cr2 < ALPHA).mean())


# -- 4. claims that fail badly on a few prompts -------------------------------------------------


@pytest.mark.parametrize("n", [8, 15])
def test_a_claim_is_not_decided_from_too_few_prompts(n):
    rng = np.random.default_rng(n)
    clean = rng.normal(size=n)
    verdict = _outcome(
        lambda: mt.Effect.from_values(clean, clean + 2 + 0.1 * rng.normal(size=n)).expect_increase(at_least=1)
    )
    assert verdict.outcome == mt.INCONCLUSIVE and verdict.pvalue < ALPHA
    assert any("a failure on 10% of prompts would be missing" in note for note in verdict.notes)


@pytest.mark.parametrize(("n", "alpha"), [(30, 0.05), (60, 0.0025)])
def test_a_failure_on_a_tenth_of_the_prompts_is_calibrated(n, alpha):
    rng = np.random.default_rng(n)
    sims = 4000
    assert _holds_rate(_mixture(rng, (sims, n)), alpha=alpha) <= _tolerance(sims, alpha)


@pytest.mark.parametrize("n", [30, 100])
def test_strongly_left_skewed_changes_are_calibrated(n):
    rng = np.random.default_rng(n)
    changes = np.exp(1 / 2) - rng.lognormal(0, 1, (4000, n))  # lognormal sigma 1, skewed against the claim
    assert _holds_rate(changes) <= _tolerance(4000)


def test_verdicts_report_the_share_against_and_note_a_few_bad_prompts():
    rng = np.random.default_rng(3)
    change = np.where(np.arange(40) < 4, -6.0, 1.5) + 0.1 * rng.normal(size=40)
    verdict = _outcome(lambda: mt.Effect.from_values(np.zeros(40), change).expect_increase(at_least=0.2))
    assert verdict.share_against == pytest.approx(0.1)
    assert any("4 of 40 prompts (10%) go the other way" in note for note in verdict.notes)
    assert "10% of them against the claim" in verdict.summary()


# -- 5. TOST power and minimum detectable effect ------------------------------------------------


def test_tost_minimum_detectable_margin_is_detected_80_percent_of_the_time():
    rng = np.random.default_rng(5)
    m = 40
    margin = stats.tost_minimum_detectable(1.0, m, ALPHA)
    changes = rng.normal(size=(4000, m))
    lower = stats.decide(changes + margin, alpha=ALPHA)
    upper = stats.decide(margin - changes, alpha=ALPHA)
    holds = (lower.p_holds < ALPHA) & (upper.p_holds < ALPHA)
    assert abs(float(holds.mean()) - 0.8) <= 0.03


def test_expect_no_change_reports_the_two_sided_mde():
    rng = np.random.default_rng(6)
    change = rng.normal(size=50)
    verdict = _outcome(lambda: mt.Effect.from_values(np.zeros(50), change).expect_no_change(within=0.1))
    assert verdict.mde == pytest.approx(stats.tost_minimum_detectable(change.std(ddof=1), 50, ALPHA), rel=1e-6)
    assert verdict.mde > stats.minimum_detectable(change.std(ddof=1), 50, ALPHA)


# -- 6. power under the skew correction ---------------------------------------------------------


@pytest.mark.parametrize(
    ("sigma", "n", "target"), [(0.25, 100, 0.8), (0.5, 400, 0.8), (0.5, 100, 0.8), (-0.5, 100, 0.5)]
)
def test_power_under_skew_matches_simulation(sigma, n, target):
    """Lognormal changes (sigma > 0: skewed against the claim), planted at the plain t-test's MDE."""
    rng = np.random.default_rng(n)
    s, side = abs(sigma), np.sign(sigma)
    sd = np.sqrt((np.exp(s**2) - 1) * np.exp(s**2))
    skew = -side * (np.exp(s**2) + 2) * np.sqrt(np.exp(s**2) - 1)
    gap = stats.minimum_detectable(sd, n, ALPHA, target)
    changes = gap + side * (np.exp(s**2 / 2) - rng.lognormal(0, s, (4000, n)))
    observed = _holds_rate(changes)
    decidable = np.mean([stats.decidable_share(row) for row in changes[:200]])
    reported = stats.power(gap, sd, n, ALPHA, skew=skew, decidable=decidable)
    assert abs(observed - reported) <= 0.05
    assert sigma < 0 or stats.power(gap, sd, n, ALPHA) - observed > 0.04  # the plain power overstates


# -- 7. floating-point rounding -----------------------------------------------------------------


@pytest.mark.parametrize("low", [29.0, 1e5])
def test_rounding_does_not_decide_a_change_exactly_at_the_margin(low):
    c = np.linspace(low, 1.03 * low, 40)
    effect = mt.Effect.from_values(c, c + 0.001)
    for claim in (lambda: effect.expect_no_change(within=0.001), lambda: effect.expect_increase(at_least=0.001)):
        verdict = _outcome(claim)
        assert verdict.outcome == mt.INCONCLUSIVE and verdict.pvalue == verdict.pvalue_refuted == 1.0


def test_one_definition_of_numerically_equal():
    assert stats.settle(np.array([1e-13, 1e-11]), 1.0).tolist() == [0.0, 1e-11]
    assert stats.settle(np.array([1e-8]), 1e5).tolist() == [0.0]


# -- 8. finite numbers in every verdict field ---------------------------------------------------


def _numbers(verdict: mt.Verdict) -> list[float]:
    fields = [verdict.estimate, verdict.pvalue, verdict.pvalue_refuted, verdict.gap, verdict.share_against]
    return fields + [value for value in (verdict.power, verdict.mde) if value is not None]


def test_constant_changes_below_the_threshold_give_finite_numbers_or_a_reason():
    verdict = _outcome(lambda: mt.Effect.from_values(np.zeros(40), np.full(40, 0.3)).expect_increase(at_least=0.5))
    assert verdict.outcome == mt.REFUTED and all(np.isfinite(_numbers(verdict)))
    assert verdict.power is None and any("not computable" in note for note in verdict.notes)


def test_power_and_mde_do_not_depend_on_the_scale():
    noise = np.random.default_rng(7).normal(size=40)
    small, huge = (
        _outcome(
            lambda scale=scale: mt.Effect.from_values(np.zeros(40), (noise + 0.2) * scale).expect_increase(at_least=0)
        )
        for scale in (1.0, 1e300)
    )
    assert huge.power == pytest.approx(small.power) and huge.mde == pytest.approx(small.mde * 1e300)


def test_differences_that_overflow_are_an_error_naming_the_fix():
    with pytest.raises(mt.MitestError, match="overflows float64.*rescale"):
        mt.Effect.from_values([-1e308, 1e308], [1e308, -1e308])


def test_a_rounding_error_gap_gets_no_sample_size_advice():
    effect = mt.Effect.from_values(np.zeros(40), np.full(40, 0.1 + 0.2))  # 0.30000000000000004
    verdict = _outcome(lambda: effect.expect_increase(at_least=0.3))
    assert verdict.gap == 0.0 and verdict.n_needed is None and "use n>=" not in verdict.summary()


def test_grouped_intervals_do_not_change_when_prompts_are_reordered():
    rng = np.random.default_rng(0)
    clean, change = rng.normal(size=60), rng.normal(1, 1, 60) * 0.37
    groups = rng.integers(0, 6, 60)
    order = rng.permutation(60)
    a = mt.Effect.from_values(clean, clean + change, groups=groups).expect_increase(at_least=0.05)
    b = mt.Effect.from_values(clean[order], (clean + change)[order], groups=groups[order]).expect_increase(
        at_least=0.05
    )
    assert (a.low, a.high, a.pvalue) == (b.low, b.high, b.pvalue)


# -- the API uses the vectorised procedure -----------------------------------------------------


def test_the_claims_use_the_vectorised_procedure():
    rng = np.random.default_rng(10)
    clean, change = rng.normal(size=45), rng.normal(0.4, 1, 45)
    groups = np.repeat(np.arange(9), [1, 2, 3, 4, 5, 5, 7, 8, 10])
    for g in (None, groups):
        verdict = _outcome(
            lambda g=g: mt.Effect.from_values(clean, clean + change, groups=g).expect_increase(at_least=0.1)
        )
        decision = stats.decide(
            np.sort(change - 0.1), None if g is None else groups[np.argsort(change, kind="stable")], alpha=ALPHA
        )
        assert verdict.pvalue == pytest.approx(float(decision.p_holds), rel=1e-9)
    expected = sps.ttest_1samp(change, 0.1, alternative="greater").pvalue
    assert _outcome(
        lambda: mt.Effect.from_values(clean, clean + change).expect_increase(at_least=0.1)
    ).pvalue >= expected * (1 - 1e-9)


def test_the_n_needed_advice_reaches_the_promised_power_under_skew():
    """Lognormal sigma 0.5 changes skewed against the claim: following the advice gives about 80% power."""
    rng = np.random.default_rng(11)
    population = np.exp(1 / 8) - rng.lognormal(0, 0.5, 20_000)
    sd, skew = float(population.std()), float(sps.skew(population))
    gap = stats.minimum_detectable(sd, 100, ALPHA)
    needed = stats.units_needed(gap, sd, ALPHA, skew=skew, sample=population)
    plain = stats.units_needed(gap, sd, ALPHA)
    assert needed > plain
    observed = _holds_rate(gap + np.exp(1 / 8) - rng.lognormal(0, 0.5, (4000, needed)))
    assert observed >= 0.75 > _holds_rate(gap + np.exp(1 / 8) - rng.lognormal(0, 0.5, (4000, plain)))


def test_an_unbounded_interval_says_why(monkeypatch):
    unbounded = stats.ConfidenceInterval(-np.inf, np.inf, 0.9)
    monkeypatch.setattr(stats, "ratio_interval", lambda *args, **kwargs: unbounded)
    rng = np.random.default_rng(12)
    clean = rng.normal(3, 1, 40)
    verdict = _outcome(
        lambda: mt.Effect.from_values(clean, clean + 2 + rng.normal(size=40)).expect_increase(at_least=1)
    )
    assert (verdict.low, verdict.high) == (-np.inf, np.inf)
    assert any(note.startswith("interval not computable") for note in verdict.notes)


# -- the reported interval and the test -------------------------------------------------------------


def test_an_interval_that_disagrees_with_the_test_is_noted():
    """Below min_prompts the test does not decide, though the interval excludes the threshold: say so."""
    rng = np.random.default_rng(0)
    clean = rng.normal(size=20)
    effect = mt.Effect.from_values(clean, clean + 1 + 0.3 * rng.normal(size=20))
    verdict = _outcome(lambda: effect.expect_increase(at_least=0.5))
    assert verdict.outcome == mt.INCONCLUSIVE and verdict.low > 0.5
    (note,) = [n for n in verdict.notes if "bootstrap interval" in n]
    assert "would say HOLDS" in note and "test decides the verdict (INCONCLUSIVE)" in note


def test_an_interval_that_agrees_with_the_test_adds_no_note():
    rng = np.random.default_rng(0)
    clean = rng.normal(size=60)
    verdict = mt.Effect.from_values(clean, clean + 1 + 0.3 * rng.normal(size=60)).expect_increase(at_least=0.5)
    assert verdict.low > 0.5 and not [n for n in verdict.notes if "bootstrap interval" in n]


@pytest.mark.parametrize(
    ("outcome", "low", "high", "kind", "says"),
    [
        (mt.HOLDS, 0.4, 0.9, "effect", "INCONCLUSIVE"),
        (mt.REFUTED, 0.6, 0.9, "effect", "HOLDS"),
        (mt.INCONCLUSIVE, -0.2, 0.2, "equivalence", "HOLDS"),
        (mt.HOLDS, 0.6, 0.8, "equivalence", "REFUTED"),
    ],
)
def test_interval_notes_name_what_the_interval_would_say(outcome, low, high, kind, says):
    from mitest.claims.decide import _interval_note

    (note,) = _interval_note(outcome, stats.ConfidenceInterval(low, high, 0.9), 0.5, kind)
    assert f"would say {says}" in note and f"({outcome})" in note


# -- grouped flip-rate power follows the test used ------------------------------------------------


def _beta_binomial_flips(rng, sims: int, clusters: int, per: int, rate: float, icc: float) -> np.ndarray:
    total = 1 / icc - 1
    shares = rng.beta(rate * total, (1 - rate) * total, (sims, clusters))
    return (rng.random((sims, clusters * per)) < np.repeat(shares, per, axis=1)).astype(float)


@pytest.mark.parametrize(("clusters", "rate", "true"), [(30, 0.8, 0.9), (15, 0.5, 0.7), (40, 0.9, 0.96)])
def test_grouped_flip_rate_power_follows_the_all_or_nothing_bound(clusters, rate, true):
    """The reported power is the combined test's (cluster t and the bound), not the plain t's (50+ points high)."""
    rng = np.random.default_rng(clusters)
    groups = np.repeat(np.arange(clusters), 6)
    flips = _beta_binomial_flips(rng, 2000, clusters, 6, true, 0.3)
    observed = float((stats.rate_test(flips, groups, rate, "greater").pvalue < ALPHA).mean())
    reported, plain = [], []
    for row in flips[:200]:
        units = stats.units(row, groups)
        sd, skew = units.std(ddof=1), stats.skewness(units)
        reported.append(stats.rate_power(true - rate, sd, clusters, rate, ALPHA, skew=skew))
        plain.append(stats.power(true - rate, sd, clusters, ALPHA))
    assert abs(float(np.mean(reported)) - observed) <= 0.05
    assert float(np.mean(plain)) - observed > 0.3  # what the verdict reported before


def test_grouped_flip_rate_advice_says_when_the_bound_cannot_be_reached():
    """Twenty clusters cannot show a rate above 0.9 (0.9 ** 20 > alpha): power 0, no MDE, and why."""
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(20), 8)
    flipped = rng.random(160) < np.repeat(np.clip(rng.normal(0.95, 0.05, 20), 0, 1), 8)
    effect = mt.Effect.from_values(np.zeros(160), np.zeros(160), groups=groups, flipped=flipped)
    verdict = _outcome(lambda: effect.expect_flip_rate(at_least=0.9))
    assert verdict.outcome == mt.INCONCLUSIVE and verdict.power == 0.0 and verdict.mde is None
    assert any("all-or-nothing bound cannot show a rate above 0.9" in note for note in verdict.notes)
    assert verdict.n_needed is not None and 0.9**verdict.n_needed < ALPHA
