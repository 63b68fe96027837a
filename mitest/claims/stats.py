"""Statistics for claims: paired tests, bootstrap intervals, corrections and power. numpy/scipy only.

Every test works on *units*: per-prompt values, or, when prompts carry groups (templates), one
value per cluster, so that prompts from one template are never counted as independent evidence.
The plain-words account of each test and its assumptions is docs/statistics.md.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from mitest.errors import ResampleWarning, StatsError

MAX_RESAMPLES = 100_000


@dataclass(frozen=True)
class TestResult:
    """One-sided test of a mean against 0 (scipy style): ``statistic``, ``pvalue``, ``df``."""

    statistic: float
    pvalue: float
    df: int
    method: str


@dataclass(frozen=True)
class ConfidenceInterval:
    """A two-sided interval ``[low, high]`` at ``level``."""

    low: float
    high: float
    level: float


# -- units ---------------------------------------------------------------------------------------


def units(values: np.ndarray, groups: Sequence[Any] | np.ndarray | None = None) -> np.ndarray:
    """Independent units for a test of ``mean(values) > 0``.

    Without groups, the values themselves. With groups, one unit per cluster,
    ``z_g = mean + (G / n) * sum(values in g - mean)``: their mean is the prompt-weighted mean and
    the one-sample t-test on them is exactly the cluster-robust (CR1) test with ``G - 1`` degrees
    of freedom, for clusters of any sizes.
    """
    values = np.asarray(values, dtype=np.float64)
    if groups is None:
        return values
    codes, count = cluster_codes(groups)
    mean = values.mean()
    residual_sums = np.bincount(codes, weights=values - mean, minlength=count)
    return mean + residual_sums * count / len(values)


def hashable(value: Any) -> bool:
    """Whether ``value`` can label a cluster (group labels are compared by hash)."""
    try:
        hash(value)
    except TypeError:
        return False
    return True


def cluster_codes(groups: Sequence[Any] | np.ndarray) -> tuple[np.ndarray, int]:
    """Integer cluster ids for group labels (any hashable values; ``2`` and ``"2"`` stay distinct)."""
    codes, uniques = pd.factorize(pd.Series(list(groups), dtype=object), sort=False)
    return codes, len(uniques)


# -- the paired test -----------------------------------------------------------------------------


def mean_test(units_: np.ndarray, alternative: str = "greater") -> TestResult:
    """Skew-adjusted one-sample t-test of ``mean > 0`` (``"greater"``) or ``< 0`` (``"less"``).

    The p-value is the larger of the Student t p-value and that of Hall's (1992) skewness-corrected
    t (a monotone cubic form of Johnson's 1978 correction), so a claim is accepted only when both
    agree. Works along the last axis (vectorised for simulations). All-equal units are decided
    exactly: p = 0 when the mean is on the alternative's side, else 1.
    """
    if alternative not in ("greater", "less"):
        raise StatsError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    x = np.asarray(units_, dtype=np.float64)
    m = x.shape[-1]
    if m < 2:
        raise StatsError(f"a paired test needs at least 2 independent units, got {m}")
    scale = np.abs(x).max(-1, keepdims=True)
    x = x / np.where(scale > 0, scale, 1.0)  # the test is scale-free; this avoids overflow in x**3
    mean = x.mean(-1)
    var = x.var(-1, ddof=1)
    sign = 1.0 if alternative == "greater" else -1.0
    degenerate = var <= 1e-24  # all units equal up to rounding (relative to their size)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.sqrt(var)
        standardized = mean / sd
        skew = ((x - mean[..., None]) ** 3).mean(-1) / sd**3
        t_plain = np.sqrt(m) * standardized
        t_hall = np.sqrt(m) * (
            standardized + skew / (6 * m) + skew * standardized**2 / 3 + skew**2 * standardized**3 / 27
        )
        pvalue = np.maximum(sps.t.sf(sign * t_plain, m - 1), sps.t.sf(sign * t_hall, m - 1))
    pvalue = np.where(degenerate, np.where(sign * mean > 0, 0.0, 1.0), pvalue)
    statistic = np.where(degenerate, np.where(mean > 0, np.inf, np.where(mean < 0, -np.inf, 0.0)), t_plain)
    if np.ndim(pvalue) == 0:
        return TestResult(float(statistic), float(pvalue), m - 1, "skew-adjusted paired t")
    return TestResult(statistic, pvalue, m - 1, "skew-adjusted paired t")  # type: ignore[arg-type]


def binomial_test(successes: int, n: int, p: float, alternative: str) -> TestResult:
    """Exact binomial test of a rate ``> p`` (``"greater"``) or ``< p`` (``"less"``)."""
    result = sps.binomtest(int(successes), int(n), float(p), alternative=alternative)
    return TestResult(successes / n, float(result.pvalue), n, "exact binomial")


def wilson_interval(successes: int, n: int, level: float) -> ConfidenceInterval:
    """Wilson score interval for a proportion."""
    ci = sps.binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return ConfidenceInterval(float(ci.low), float(ci.high), level)


# -- bootstrap -----------------------------------------------------------------------------------


def resamples_for(alpha: float) -> int:
    """Bootstrap resamples so that an ``alpha`` tail holds at least 50 resamples (2,000 at least).

    Capped at ``MAX_RESAMPLES`` with a :class:`ResampleWarning`.
    """
    wanted = max(2000, math.ceil(50 / alpha))
    if wanted > MAX_RESAMPLES:
        warnings.warn(
            ResampleWarning(
                f"alpha={alpha:.2g} needs {wanted} bootstrap resamples; using {MAX_RESAMPLES}, so interval "
                "tails are approximate (the verdict's p-value is analytic and unaffected)"
            ),
            stacklevel=3,
        )
        return MAX_RESAMPLES
    return wanted


def ratio_interval(
    numerators: np.ndarray,
    denominators: np.ndarray,
    *,
    level: float,
    groups: Sequence[Any] | np.ndarray | None = None,
    seed: int = 0,
    n_resamples: int | None = None,
) -> ConfidenceInterval:
    """BCa bootstrap interval for ``sum(numerators) / sum(denominators)``; resamples clusters if grouped.

    A mean is the ratio with all denominators 1. Degenerate data (every resample gives the same
    value) gets the point estimate as both ends; if BCa cannot be computed, percentile is used.
    """
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    if groups is not None:
        codes, count = cluster_codes(groups)
        num = np.bincount(codes, weights=num, minlength=count).astype(np.float64)
        den = np.bincount(codes, weights=den, minlength=count).astype(np.float64)
    order = np.lexsort((den, num))  # resampling a canonical order: the same interval for any prompt order
    num, den = num[order], den[order]
    estimate = num.sum() / den.sum()
    spread = np.abs(num * den.sum() - den * num.sum()).max()
    if len(num) < 2 or spread <= 1e-12 * max(np.abs(num).max() * abs(den.sum()), 1e-300):
        return ConfidenceInterval(float(estimate), float(estimate), level)
    alpha = (1 - level) / 2
    resamples = n_resamples or resamples_for(alpha)

    def statistic(n_, d_, axis=-1):
        return n_.sum(axis) / d_.sum(axis)

    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = sps.bootstrap(
                (num, den),
                statistic,
                paired=True,
                vectorized=True,
                confidence_level=level,
                n_resamples=resamples,
                method=method,
                rng=np.random.default_rng(seed),
                batch=max(1, 20_000_000 // (len(num) * 8)),
            )
        low, high = result.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return ConfidenceInterval(float(low), float(high), level)
    # Some resamples have no finite value (e.g. a denominator summing to 0): the ratio is unbounded.
    return ConfidenceInterval(-math.inf, math.inf, level)


# -- multiple comparisons ------------------------------------------------------------------------


def bonferroni(pvalues: Sequence[float]) -> np.ndarray:
    """Bonferroni-adjusted p-values (family-wise error)."""
    p = np.asarray(pvalues, dtype=np.float64)
    return np.minimum(1.0, p * len(p))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error, uniformly more powerful than Bonferroni)."""
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p)
    m = len(p)
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, stepped)
    return adjusted


def benjamini_hochberg(pvalues: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate)."""
    p = np.asarray(pvalues, dtype=np.float64)
    return sps.false_discovery_control(p, method="bh") if len(p) else p


# -- power ---------------------------------------------------------------------------------------


def power(gap: float, sd: float, m: int, alpha: float) -> float:
    """Power of the one-sided t-test at ``alpha`` with ``m`` units of spread ``sd`` to detect ``gap``."""
    if sd <= 0 or not math.isfinite(gap / sd):
        return 1.0 if gap > 0 else 0.0
    df = m - 1
    critical = sps.t.isf(alpha, df)
    return float(sps.nct.sf(critical, df, gap * math.sqrt(m) / sd))


def minimum_detectable(sd: float, m: int, alpha: float, target: float = 0.8) -> float:
    """Smallest gap the one-sided t-test detects with probability ``target`` given ``m`` units."""
    df = m - 1
    return float((sps.t.isf(alpha, df) + sps.t.ppf(target, df)) * sd / math.sqrt(m))


def units_needed(gap: float, sd: float, alpha: float, target: float = 0.8) -> int | None:
    """Units needed for the one-sided t-test to detect ``gap`` with probability ``target``.

    None when the gap is too small relative to the spread for any realistic sample.
    """
    if gap <= 0 or sd <= 0 or not math.isfinite(gap / sd):
        return 2
    if gap / sd < 1e-4:  # beyond any realistic sample (more than about 10^9 units)
        return None
    low, high = 2, max(3, math.ceil(((sps.norm.isf(alpha) + sps.norm.ppf(target)) * sd / gap) ** 2))
    while power(gap, sd, high, alpha) < target:
        low, high = high, high * 2
    while low < high:  # the smallest m with enough power (power grows with m)
        middle = (low + high) // 2
        low, high = (middle + 1, high) if power(gap, sd, middle, alpha) < target else (low, middle)
    return high
