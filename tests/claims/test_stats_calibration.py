"""Calibration of the claim tests, by simulation (vectorised; fixed seeds).

Each check simulates 2,000 claims per setting whose truth sits exactly at the boundary (the claim
is false at the margin) and asserts the false-HOLDS rate stays within alpha plus three Monte-Carlo
standard errors. Power on planted effects is compared with :func:`mitest.claims.stats.power`.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from mitest.claims import stats

ALPHA = 0.05
SIMS = 2000
TOLERANCE = ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / SIMS)  # 0.0646


def _centered(kind: str, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Zero-mean draws: normal, heavy-tailed t3, or lognormal skewed right (+) or left (-)."""
    if kind == "normal":
        return rng.normal(size=shape)
    if kind == "t3":
        return rng.standard_t(3, size=shape)
    sigma = float(kind.split(":")[1])
    sign = -1.0 if kind.startswith("-") else 1.0
    return sign * (rng.lognormal(0.0, sigma, size=shape) - np.exp(sigma**2 / 2))


def _holds_rate(units: np.ndarray) -> float:
    """Share of simulated claims 'mean > 0' that the test declares HOLDS."""
    return float((stats.mean_test(units, "greater").pvalue < ALPHA).mean())


NULLS = (
    [(kind, n) for kind in ("normal", "t3") for n in (10, 30, 100, 500)]
    + [(kind, n) for kind in ("lognormal:0.25", "-lognormal:0.25") for n in (30, 100, 500)]
    + [("lognormal:0.25", 10)]
    + [(kind, n) for kind in ("lognormal:0.5", "-lognormal:0.5") for n in (100, 500)]
)


@pytest.mark.parametrize(("kind", "n"), NULLS)
def test_false_holds_rate_at_the_boundary_is_at_most_alpha(kind, n):
    rng = np.random.default_rng(zlib.crc32(f"{kind}:{n}".encode()))  # stable across processes
    deltas = 1.0 + _centered(kind, rng, (SIMS, n))  # true mean change exactly at the threshold 1.0
    assert _holds_rate(deltas - 1.0) <= TOLERANCE


def test_the_claim_procedure_refuses_left_skewed_deltas_at_n_10():
    """The raw test is liberal here (about 0.06); the claim procedure decides nothing below min_prompts."""
    rng = np.random.default_rng(11)
    deltas = _centered("-lognormal:0.25", rng, (20_000, 10))
    assert 0.05 < _holds_rate(deltas) < 0.075
    decision = stats.decide(deltas, alpha=ALPHA)
    assert decision.short_holds.all() and decision.short_refuted.all()


def _claim_rate(margins: np.ndarray, alpha: float = ALPHA) -> float:
    """Share of simulated claims 'mean(margin) > 0' that the claim procedure declares HOLDS."""
    decision = stats.decide(margins, alpha=alpha)
    return float(((decision.p_holds < alpha) & ~decision.short_holds).mean())


def _scaled_noise(kind: str, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Noise times each prompt's own scale, as relative and recovery claims see it (benchmarks/calibration_table.py)."""
    return _centered(kind, rng, shape) * np.abs(rng.normal(3, 1, shape)) / 3


# The hardest calibrated cell of each claim kind in benchmarks/calibration_table.py (5,000 simulations per cell).
HARDEST = [
    ("increase: lognormal 0.5 against, n=30", "-lognormal:0.5", 30, False),
    ("decrease: t3, n=30", "t3", 30, False),
    ("relative: lognormal 0.5 against, n=100", "-lognormal:0.5", 100, True),
    ("recovery: lognormal 0.5 against, n=100", "-lognormal:0.5", 100, True),
]


@pytest.mark.parametrize(("label", "kind", "n", "scaled"), HARDEST, ids=[h[0] for h in HARDEST])
def test_hardest_cells_of_each_claim_kind_are_calibrated(label, kind, n, scaled):
    rng = np.random.default_rng(zlib.crc32(label.encode()))
    margins = (_scaled_noise if scaled else _centered)(kind, rng, (4000, n))
    assert _claim_rate(margins) <= ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / 4000)


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_hardest_equivalence_cell_is_calibrated(side):
    """TOST at the margin with lognormal sigma 0.5 changes, tail either way, n = 100."""
    rng = np.random.default_rng(int(side) + 7)
    delta = 0.5 + side * _centered("lognormal:0.5", rng, (4000, 100))
    lower, upper = stats.decide(delta + 0.5, alpha=ALPHA), stats.decide(0.5 - delta, alpha=ALPHA)
    holds = (lower.p_holds < ALPHA) & (upper.p_holds < ALPHA) & ~lower.short_holds & ~upper.short_holds
    assert float(holds.mean()) <= ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / 4000)


def test_hardest_monotonic_cell_is_calibrated():
    """Three doses with no trend, per-dose changes from the 90/10 mixture, n = 100."""
    rng = np.random.default_rng(13)
    fails = rng.random((4000, 100, 3)) < 0.1
    values = np.where(fails, -9.0, 1.0) + 0.3 * rng.normal(size=(4000, 100, 3))
    concordance = sum(np.sign(values[..., j] - values[..., i]) for i, j in [(0, 1), (0, 2), (1, 2)])
    assert _claim_rate(np.asarray(concordance, dtype=float)) <= ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / 4000)


@pytest.mark.slow
@pytest.mark.parametrize("n", [30, 500])
def test_documented_limit_scaled_lognormal_recovery(n):
    """docs/statistics.md: recovery with lognormal sigma 0.5 noise scaled per prompt is somewhat liberal (0.06-0.07)."""
    rng = np.random.default_rng(n + 1)
    rate = _claim_rate(_scaled_noise("-lognormal:0.5", rng, (20_000, n)))
    assert 0.045 < rate < 0.085


@pytest.mark.parametrize("clusters", [10, 30])
@pytest.mark.parametrize("kind", ["normal", "t3"])
def test_clustered_prompts_are_calibrated_and_ignoring_clusters_is_not(clusters, kind):
    rng = np.random.default_rng(clusters)
    per_cluster = 8
    template_effect = rng.normal(size=(SIMS, clusters, 1))  # prompts of one template move together
    deltas = (template_effect + 0.5 * _centered(kind, rng, (SIMS, clusters, per_cluster))).reshape(SIMS, -1)
    groups = np.repeat(np.arange(clusters), per_cluster)
    cluster_units = deltas.reshape(SIMS, clusters, per_cluster).sum(-1) * clusters / deltas.shape[1]
    np.testing.assert_allclose(np.sort(cluster_units[0]), np.sort(stats.units(deltas[0], groups)))
    assert _holds_rate(cluster_units) <= TOLERANCE
    assert _holds_rate(deltas) > 0.15, "treating clustered prompts as independent must be anti-conservative"


@pytest.mark.parametrize("n", [10, 50, 200])
def test_equivalence_by_two_one_sided_tests_is_calibrated_at_the_margin(n):
    rng = np.random.default_rng(n)
    within = 0.3
    deltas = within + _centered("normal", rng, (SIMS, n)) * 0.5  # true change exactly at +margin
    p_lower = stats.mean_test(deltas + within, "greater").pvalue
    p_upper = stats.mean_test(within - deltas, "greater").pvalue
    assert float((np.maximum(p_lower, p_upper) < ALPHA).mean()) <= TOLERANCE


@pytest.mark.parametrize("n", [20, 100])
def test_recovery_is_calibrated_at_the_threshold(n):
    rng = np.random.default_rng(7 + n)
    r = 0.9
    gap = 2.0 + rng.normal(size=(SIMS, n))  # clean - base per prompt
    recovered = r * gap + 0.4 * _centered("t3", rng, (SIMS, n))  # true ratio of means exactly r
    assert _holds_rate(recovered - r * gap) <= TOLERANCE


@pytest.mark.parametrize(("n", "p"), [(20, 0.5), (60, 0.8), (200, 0.3)])
def test_flip_rate_binomial_test_is_calibrated(n, p):
    rng = np.random.default_rng(n)
    flips = rng.binomial(n, p, size=SIMS)
    holds = [stats.binomial_test(k, n, p, "greater").pvalue < ALPHA for k in flips]
    assert np.mean(holds) <= TOLERANCE


@pytest.mark.parametrize(("n", "gap"), [(20, 0.45), (50, 0.36), (100, 0.2), (30, 0.6)])
def test_power_on_planted_effects_matches_the_reported_power(n, gap):
    rng = np.random.default_rng(n)
    deltas = 1.0 + gap + rng.normal(size=(SIMS, n))  # true change exceeds the threshold 1.0 by gap
    observed = _holds_rate(deltas - 1.0)
    reported = stats.power(gap, 1.0, n, ALPHA)
    assert 0.2 < reported < 0.99
    assert abs(observed - reported) <= 0.05  # stated tolerance: 5 points (Monte-Carlo error is ~1)


def test_units_needed_reaches_the_target_power():
    for gap, sd in [(0.17, 1.0), (0.5, 2.0), (1.0, 0.3)]:
        m = stats.units_needed(gap, sd, ALPHA)
        assert stats.power(gap, sd, m, ALPHA) >= 0.8 > stats.power(gap, sd, max(2, m - 2), ALPHA)
        assert stats.minimum_detectable(sd, m, ALPHA) <= gap * 1.001


@pytest.mark.slow
def test_bca_interval_covers_the_mean_at_its_level():
    rng = np.random.default_rng(3)
    level, trials = 0.9, 300
    covered = 0
    for trial in range(trials):
        values = rng.lognormal(0, 0.5, 40)
        ci = stats.ratio_interval(values, np.ones(40), level=level, seed=trial, n_resamples=2000)
        covered += ci.low <= np.exp(0.125) <= ci.high
    assert abs(covered / trials - level) <= 3 * np.sqrt(level * (1 - level) / trials) + 0.02
