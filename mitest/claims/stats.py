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
from scipy.integrate import quad
from scipy.optimize import brentq

from mitest.errors import ResampleWarning, StatsError

MAX_RESAMPLES = 100_000


@dataclass(frozen=True)
class TestResult:
    """One-sided test of a mean against 0 (scipy style): ``statistic``, ``pvalue``, ``df``."""

    statistic: float
    pvalue: float
    df: float
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


# -- numerical equality and minimum sizes ------------------------------------------------------

RELATIVE_TOLERANCE = 1e-12
"""Two numbers are *numerically equal* when they differ by at most this share of the size of the
numbers they were computed from (about 4,500 float64 ulps): the one definition every claim uses."""

FAILURE_SHARE = 0.1
"""The share of prompts on which a claim may fail that a mean claim must be able to see: a claim is
decided only from enough prompts that such a failure shows up in the sample with probability 1 - alpha."""

COCHRAN = 25
"""Cochran's (1977) rule: the normal approximation to a mean needs ``n > 25 * skewness**2`` units."""

SKEW_UNITS = 20
"""Fewest units whose skewness the rules act on (its standard error is about sqrt(6 / m): 0.55 at 20)."""


def settle(margin: np.ndarray | float, size: np.ndarray | float) -> np.ndarray:
    """Zero every margin numerically equal to 0: ``|margin| <= RELATIVE_TOLERANCE * size``.

    ``size`` is the magnitude of the numbers the margin was computed from (for ``b - a - d``, use
    ``|a| + |b| + |d|``), so rounding is judged on the scale where it happened.
    """
    margin = np.asarray(margin, dtype=np.float64)
    return np.where(np.abs(margin) <= RELATIVE_TOLERANCE * np.abs(size), 0.0, margin)


def min_prompts(alpha: float) -> int:
    """Fewest prompts for which a failure on ``FAILURE_SHARE`` of prompts shows up with probability ``1 - alpha``.

    ``(1 - FAILURE_SHARE) ** n <= alpha``: 29 prompts at alpha 0.05, 57 at 0.0025.
    """
    return max(2, math.ceil(math.log(alpha) / math.log1p(-FAILURE_SHARE) - 1e-9))


def cochran_units(skew: float | np.ndarray) -> np.ndarray:
    """Units Cochran's rule asks for at this skewness: ``25 * skew**2``."""
    return COCHRAN * np.square(skew)


# -- the paired test -----------------------------------------------------------------------------


def _hall_p(t_plain: np.ndarray, skew: np.ndarray, m: int, df: np.ndarray | float, sign: float) -> np.ndarray:
    """Larger of the Student and Hall (1992) skew-corrected one-sided p-values."""
    standardized = sign * t_plain / math.sqrt(m)
    g = sign * skew  # the skew as seen by this alternative's test
    with np.errstate(invalid="ignore", over="ignore"):
        t_hall = np.sqrt(m) * (standardized + g / (6 * m) + g * standardized**2 / 3 + g**2 * standardized**3 / 27)
        return np.maximum(sps.t.sf(sign * t_plain, df), sps.t.sf(t_hall, df))


def _degenerate_p(mean: np.ndarray, m: int, sign: float, exact: bool) -> np.ndarray:
    """p-value when every unit is equal: exact (0 or 1) only for exact data, else the sign test's ``0.5 ** m``."""
    on_side = sign * mean > 0
    return np.where(on_side, 0.0 if exact else 0.5**m, 1.0)


def mean_test(units_: np.ndarray, alternative: str = "greater", *, exact: bool = False) -> TestResult:
    """Skew-adjusted one-sample t-test of ``mean > 0`` (``"greater"``) or ``< 0`` (``"less"``).

    The p-value is the larger of the Student t p-value and that of Hall's (1992) skewness-corrected
    t (a monotone cubic form of Johnson's 1978 correction), so a claim is accepted only when both
    agree. Works along the last axis (vectorised for simulations). All-equal units carry no spread:
    their p-value is the sign test's, ``0.5 ** m`` on the alternative's side, unless ``exact`` says the
    values are exact by construction (then 0).
    """
    sign = _sign(alternative)
    x = _scaled(units_)
    m = x.shape[-1]
    mean = x.mean(-1)
    var = x.var(-1, ddof=1)
    degenerate = var <= 1e-24  # all units equal up to rounding (relative to their size)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.sqrt(var)
        t_plain = np.sqrt(m) * mean / sd
        skew = ((x - mean[..., None]) ** 3).mean(-1) / sd**3
        pvalue = _hall_p(t_plain, skew, m, m - 1, sign)
    pvalue = np.where(degenerate, _degenerate_p(mean, m, sign, exact), pvalue)
    statistic = np.where(degenerate, _signed_inf(mean), t_plain)
    return _result(statistic, pvalue, m - 1, "skew-adjusted paired t")


def cluster_test(
    values: np.ndarray, groups: Sequence[Any] | np.ndarray, alternative: str = "greater", *, exact: bool = False
) -> TestResult:
    """Cluster-robust one-sided test of the prompt-weighted ``mean > 0``: CR2 with Bell-McCaffrey df.

    The variance is the CR2 (bias-reduced linearisation) estimator of Bell and McCaffrey (2002),
    ``sum_g S_g**2 / (1 - n_g/n) / n**2`` with ``S_g`` the cluster's residual sum. The t reference
    has the Bell-McCaffrey Satterthwaite degrees of freedom computed, as Imbens and Kolesar (2016)
    recommend, under a random-effects working model with the intra-cluster correlation estimated
    from the data (:func:`imbens_kolesar_df`): ``G - 1`` for equal sizes, fewer for unequal ones.
    As in :func:`mean_test`, the p-value is the larger of that t and Hall's skew correction
    (skewness of the CR2-scaled cluster residuals). Vectorised along the last axis.
    """
    sign = _sign(alternative)
    codes, count = cluster_codes(groups)
    if count < 2:
        raise StatsError(f"a cluster test needs at least 2 clusters, got {count}")
    x = _scaled(values)
    n = x.shape[-1]
    share = np.bincount(codes, minlength=count) / n
    mean = x.mean(-1)
    sums = (x - mean[..., None]) @ _one_hot(codes, count)
    scaled = sums / np.sqrt(1.0 - share)  # CR2-adjusted cluster residual sums
    se = np.sqrt((scaled**2).sum(-1)) / n
    df = imbens_kolesar_df(x, codes, count)
    degenerate = se <= 1e-12 * np.maximum(np.abs(x).max(-1), 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_plain = mean / se
        centred = scaled - scaled.mean(-1, keepdims=True)
        skew = (centred**3).mean(-1) / ((centred**2).mean(-1) * count / (count - 1)) ** 1.5
        pvalue = _hall_p(t_plain, skew, count, df, sign)
    pvalue = np.where(degenerate, _degenerate_p(mean, count, sign, exact), pvalue)
    statistic = np.where(degenerate, _signed_inf(mean), t_plain)
    return _result(statistic, pvalue, df, "skew-adjusted CR2 t, Bell-McCaffrey df (Imbens-Kolesar)")


def bell_mccaffrey_df(share: np.ndarray) -> float:
    """Bell-McCaffrey (2002) degrees of freedom of the CR2 test of a mean, from each cluster's share of prompts.

    For the intercept-only model the Satterthwaite formula reduces to ``1 / tr(M^2)`` with
    ``M = D (diag(pi) - pi pi') D``, ``D = diag((1 - pi)^-1/2)`` (working independence; ``tr M = 1``).
    """
    pi = np.asarray(share, dtype=np.float64)
    b = pi**2 / (1.0 - pi)
    trace_m2 = float((pi**2).sum() + b.sum() ** 2 - (b**2).sum())
    return 1.0 / trace_m2


def intracluster_correlation(values: np.ndarray, codes: np.ndarray, count: int) -> np.ndarray:
    """ANOVA estimate of the intra-cluster correlation for unequal cluster sizes, clipped to [0, 0.99]."""
    x = np.asarray(values, dtype=np.float64)
    n = x.shape[-1]
    sizes = np.bincount(codes, minlength=count).astype(np.float64)
    if n <= count:
        return np.zeros(x.shape[:-1])
    sums = x @ _one_hot(codes, count)
    between = ((sums / sizes - x.mean(-1, keepdims=True)) ** 2 * sizes).sum(-1) / (count - 1)
    within = np.maximum((x**2).sum(-1) - (sums**2 / sizes).sum(-1), 0.0) / (n - count)
    n0 = (n - (sizes**2).sum() / n) / (count - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (between - within) / (between + (n0 - 1) * within)
    return np.clip(np.nan_to_num(rho, nan=0.0), 0.0, 0.99)


def imbens_kolesar_df(values: np.ndarray, codes: np.ndarray, count: int) -> np.ndarray | float:
    """Bell-McCaffrey degrees of freedom under a random-effects working model (Imbens and Kolesar 2016).

    With working covariance ``(1 - rho) I + rho * blockdiag(J)`` the Satterthwaite df is
    ``tr(M)^2 / tr(M^2)`` for ``M = C' diag((1 - rho) n_g + rho n_g^2) C``, where ``C`` holds the CR2
    weights of each cluster's indicator, ``C[t, s] = (delta_ts - pi_s) / (n sqrt(1 - pi_s))``.
    ``rho = 0`` gives :func:`bell_mccaffrey_df`. Vectorised along the last axis of ``values``.
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.shape[-1]
    sizes = np.bincount(codes, minlength=count).astype(np.float64)
    share = sizes / n
    weights = (np.eye(count) - share[None, :]) / (n * np.sqrt(1.0 - share))[None, :]
    rho = intracluster_correlation(x, codes, count)
    d = (1.0 - rho)[..., None] * sizes + rho[..., None] * sizes**2
    m = np.einsum("ts,...t,tu->...su", weights, d, weights)
    df = np.trace(m, axis1=-2, axis2=-1) ** 2 / (m**2).sum((-2, -1))
    return float(df) if np.ndim(df) == 0 else df


def _signed_inf(mean: np.ndarray) -> np.ndarray:
    return np.where(mean > 0, np.inf, np.where(mean < 0, -np.inf, 0.0))


def _one_hot(codes: np.ndarray, count: int) -> np.ndarray:
    indicator = np.zeros((len(codes), count))
    indicator[np.arange(len(codes)), codes] = 1.0
    return indicator


def _sign(alternative: str) -> float:
    if alternative not in ("greater", "less"):
        raise StatsError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    return 1.0 if alternative == "greater" else -1.0


def _scaled(values: np.ndarray) -> np.ndarray:
    """Values divided by their largest magnitude (the tests are scale-free; this avoids overflow in x**3)."""
    x = np.asarray(values, dtype=np.float64)
    if x.shape[-1] < 2:
        raise StatsError(f"a paired test needs at least 2 independent units, got {x.shape[-1]}")
    scale = np.abs(x).max(-1, keepdims=True)
    return x / np.where(scale > 0, scale, 1.0)


def _result(statistic: np.ndarray, pvalue: np.ndarray, df: Any, method: str) -> TestResult:
    if np.ndim(pvalue) == 0:
        return TestResult(float(statistic), float(pvalue), df, method)
    return TestResult(statistic, pvalue, df, method)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Decision:
    """Both one-sided tests of a claim's per-prompt margins, and why either side may not be decided.

    ``p_holds`` tests ``mean(margin) > 0``, ``p_refuted`` ``< 0``. ``refused_holds`` /
    ``refused_refuted`` hold the reasons a side cannot be decided at this n (empty when it can).
    ``se`` is the standard error of the mean margin, ``skew`` the units' skewness, ``m`` the units
    (prompts or clusters) and ``df`` the test's degrees of freedom. Arrays when vectorised.
    """

    p_holds: Any
    p_refuted: Any
    se: Any
    skew: Any
    m: int
    df: Any
    method: str
    exact: bool
    short_holds: Any  # bool per simulation: refused by the sample-size rules (vectorised form)
    short_refuted: Any
    refused_holds: tuple[str, ...] = ()
    refused_refuted: tuple[str, ...] = ()


def decide(
    margins: np.ndarray,
    groups: Sequence[Any] | np.ndarray | None = None,
    *,
    alpha: float,
    exact: bool = False,
    min_n: int | None = None,
) -> Decision:
    """The decision procedure of every mean claim on per-prompt margins (claim: ``mean(margin) > 0``).

    1. The test: :func:`mean_test` on prompts, or :func:`cluster_test` (CR2, Bell-McCaffrey) on clusters.
    2. Fewer than :func:`min_prompts` prompts: neither side is decided (a failure on one prompt in
       ten could be missing from the sample), unless the values are ``exact``.
    3. Cochran's rule: a side is not decided while its units are skewed against it and
       ``m < 25 * skew**2`` (checked with ``SKEW_UNITS`` or more units), unless
       Cantelli's shape-free bound ``1 / (1 + t^2)`` is already below alpha.
    Vectorised along the last axis; reasons are given for 1-D input.
    """
    x = np.asarray(margins, dtype=np.float64)
    n = x.shape[-1]
    if groups is None:
        holds, refuted = mean_test(x, "greater", exact=exact), mean_test(x, "less", exact=exact)
        m = n
    else:
        holds, refuted = cluster_test(x, groups, "greater", exact=exact), cluster_test(x, groups, "less", exact=exact)
        m = cluster_codes(groups)[1]
    se, skew = _se_and_skew(x, groups)
    needed = min_prompts(alpha) if min_n is None else min_n
    few = (n < needed) and not exact
    skew_limit = cochran_units(skew) if m >= SKEW_UNITS else np.zeros_like(skew)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, x.mean(-1) / np.where(se > 0, se, 1.0), 0.0)
    # Cantelli's inequality bounds a one-sided tail whatever the shape: 1 / (1 + t^2). Where it already
    # decides, the skew cannot overturn the decision.
    shape_free = 1.0 / (1.0 + t**2) < alpha
    skewed_holds = (skew < 0) & (m < skew_limit) & ~np.asarray(exact) & ~((t > 0) & shape_free)
    skewed_refuted = (skew > 0) & (m < skew_limit) & ~np.asarray(exact) & ~((t < 0) & shape_free)
    short_holds, short_refuted = few | skewed_holds, few | skewed_refuted
    reasons: tuple[list[str], list[str]] = ([], [])
    if np.ndim(x) == 1:
        if few:
            text = (
                f"n = {n} prompts is below the {needed} needed at alpha = {alpha:.3g}: a failure on "
                f"{FAILURE_SHARE:.0%} of prompts would be missing from the sample with probability "
                f"{(1 - FAILURE_SHARE) ** n:.2g}"
            )
            reasons[0].append(text)
            reasons[1].append(text)
        for side, skewed, word in ((0, skewed_holds, "against the claim"), (1, skewed_refuted, "for the claim")):
            if skewed:
                reasons[side].append(
                    f"the {'clusters' if groups is not None else 'prompts'} are skewed {word} (skewness "
                    f"{float(skew):.2g}): Cochran's rule asks for "
                    f"{math.ceil(float(skew_limit))} units, not {m}"
                )
    return Decision(
        p_holds=holds.pvalue,
        p_refuted=refuted.pvalue,
        se=se,
        skew=skew,
        m=m,
        df=holds.df if np.ndim(holds.df) else float(holds.df),
        method=holds.method,
        exact=exact,
        short_holds=short_holds,
        short_refuted=short_refuted,
        refused_holds=tuple(reasons[0]),
        refused_refuted=tuple(reasons[1]),
    )


def _se_and_skew(x: np.ndarray, groups: Sequence[Any] | np.ndarray | None) -> tuple[Any, Any]:
    """Standard error of the mean of ``x`` (CR2 when grouped) and the units' skewness, in x's scale."""
    scale = np.abs(x).max(-1)
    scale = np.where(scale > 0, scale, 1.0)
    y = x / scale[..., None]
    n = y.shape[-1]
    if groups is None:
        resid = y - y.mean(-1, keepdims=True)
        sd = np.sqrt((resid**2).sum(-1) / (n - 1))
        se = sd / math.sqrt(n)
        units_ = resid
    else:
        codes, count = cluster_codes(groups)
        share = np.bincount(codes, minlength=count) / n
        units_ = ((y - y.mean(-1, keepdims=True)) @ _one_hot(codes, count)) / np.sqrt(1.0 - share)
        se = np.sqrt((units_**2).sum(-1)) / n
        units_ = units_ - units_.mean(-1, keepdims=True)
    spread = np.sqrt((units_**2).mean(-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where(spread > 1e-12, (units_**3).mean(-1) / np.where(spread > 0, spread, 1.0) ** 3, 0.0)
        skew = skew * (((units_.shape[-1] - 1) / units_.shape[-1]) ** 1.5)  # with the ddof-1 spread, as mean_test
    se = se * scale
    if np.ndim(se) == 0:
        return float(se), float(skew)
    return se, skew


def rate_test(flips: np.ndarray, groups: Sequence[Any] | np.ndarray, rate: float, alternative: str) -> TestResult:
    """Test of a grouped flip rate ``> rate`` (``"greater"``) or ``< rate``: the larger of two p-values.

    1. the CR2 cluster test (:func:`cluster_test`) on ``flips - rate``;
    2. the exact binomial test on the clusters' flip shares as if every cluster flipped all or nothing
       (intra-cluster correlation 1, the worst case): ``P(Binomial(G, rate) >= sum of shares)``,
       with the continuous extension of the binomial tail (regularised incomplete beta).
    The second keeps the test valid when a few clusters, or none, show the variation (rates near 0 or 1).
    Vectorised along the last axis.
    """
    sign = _sign(alternative)
    x = np.asarray(flips, dtype=np.float64)
    codes, count = cluster_codes(groups)
    t_part = cluster_test(x - rate, groups, alternative).pvalue
    shares = (x @ _one_hot(codes, count)) / np.bincount(codes, minlength=count)
    k = shares.sum(-1)
    if sign > 0:  # P(Bin(G, rate) >= k) = I_rate(k, G - k + 1), continuous in k
        bound = np.where(k <= 0, 1.0, sps.beta.cdf(rate, np.maximum(k, 1e-12), count - k + 1))
    else:  # P(Bin(G, rate) <= k) = 1 - I_rate(k + 1, G - k)
        bound = np.where(k >= count, 1.0, sps.beta.sf(rate, k + 1, np.maximum(count - k, 1e-12)))
    pvalue = np.maximum(t_part, np.minimum(bound, 1.0))
    return _result(np.asarray(k / count), pvalue, count - 1, "CR2 t and all-or-nothing cluster binomial")


def binomial_test(successes: int, n: int, p: float, alternative: str) -> TestResult:
    """Exact binomial test of a rate ``> p`` (``"greater"``) or ``< p`` (``"less"``)."""
    result = sps.binomtest(int(successes), int(n), float(p), alternative=alternative)
    return TestResult(successes / n, float(result.pvalue), n, "exact binomial")


def wilson_interval(successes: int, n: int, level: float) -> ConfidenceInterval:
    """Wilson score interval for a proportion."""
    ci = sps.binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return ConfidenceInterval(float(ci.low), float(ci.high), level)


# -- two independent samples -----------------------------------------------------------------------


def welch_test(
    first: np.ndarray, second: np.ndarray, difference: float = 0.0, alternative: str = "greater"
) -> TestResult:
    """Welch's t-test of ``mean(first) - mean(second) > difference`` (``"greater"``) or ``<``.

    Unequal variances, Welch-Satterthwaite degrees of freedom. Two samples without spread give the
    sign test's ``0.5 ** m`` (m: both samples' sizes) on the side of the observed gap, as
    :func:`mean_test` does. Vectorised along the last axis (the samples' sizes may differ).
    """
    sign = _sign(alternative)
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    na, nb = a.shape[-1], b.shape[-1]
    if min(na, nb) < 2:
        raise StatsError(f"a two-sample test needs at least 2 values in each sample, got {na} and {nb}")
    scale = np.maximum(np.abs(a).max(-1), np.abs(b).max(-1))
    scale = np.maximum(np.where(scale > 0, scale, 1.0), abs(difference))
    a, b, d = a / scale[..., None], b / scale[..., None], difference / scale
    va, vb = a.var(-1, ddof=1) / na, b.var(-1, ddof=1) / nb
    gap = a.mean(-1) - b.mean(-1) - d
    degenerate = va + vb <= 1e-24
    with np.errstate(divide="ignore", invalid="ignore"):
        t = gap / np.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
        pvalue = sps.t.sf(sign * t, df)
    pvalue = np.where(degenerate, _degenerate_p(gap, na + nb, sign, False), pvalue)
    statistic = np.where(degenerate, _signed_inf(gap), t)
    return _result(statistic, pvalue, np.where(degenerate, na + nb - 2.0, df), "Welch t")


def welch_decision(first: np.ndarray, second: np.ndarray, difference: float, *, alpha: float) -> Decision:
    """The decision of a two-sample claim ``mean(first) - mean(second) > difference`` by :func:`welch_test`.

    Like :func:`decide` for one sample, neither side is decided while either sample has fewer than
    :func:`min_prompts` values (a failure on one prompt in ten could be missing from it). ``se`` is the
    standard error of the difference, ``m`` both samples' sizes together. For 1-D input.
    """
    holds = welch_test(first, second, difference, "greater")
    refuted = welch_test(first, second, difference, "less")
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    needed = min_prompts(alpha)
    few = min(len(a), len(b)) < needed
    reasons = (
        (
            f"the samples have {len(a)} and {len(b)} prompts; each needs {needed} at alpha = {alpha:.3g}: a "
            f"failure on {FAILURE_SHARE:.0%} of one set's prompts could be missing from it",
        )
        if few
        else ()
    )
    return Decision(
        p_holds=float(holds.pvalue),
        p_refuted=float(refuted.pvalue),
        se=se,
        skew=0.0,
        m=len(a) + len(b),
        df=float(holds.df),
        method=holds.method,
        exact=False,
        short_holds=few,
        short_refuted=few,
        refused_holds=reasons,
        refused_refuted=reasons,
    )


def welch_interval(first: np.ndarray, second: np.ndarray, *, level: float) -> ConfidenceInterval:
    """The Welch interval of ``mean(first) - mean(second)`` at ``level`` (the estimate if neither has spread)."""
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    estimate = float(a.mean() - b.mean())
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    if not se > 0:
        return ConfidenceInterval(estimate, estimate, level)
    half = float(sps.t.isf((1 - level) / 2, welch_test(a, b).df)) * se
    return ConfidenceInterval(estimate - half, estimate + half, level)


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
        within = np.lexsort((den, num, codes))  # each cluster summed in value order: the same sums for any prompt order
        codes, num, den = codes[within], num[within], den[within]
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


def _critical(alpha: float, df: float, m: int, skew: float) -> float:
    """The t value the test must exceed: Student's, or higher when Hall's correction asks for more.

    Hall's statistic is ``sqrt(m) * f(t / sqrt(m))`` with ``f(s) = ((1 + g s / 3)^3 - 1) / g + g / (6m)``,
    increasing in s; so the test rejects when t exceeds the larger of the Student critical value and
    ``sqrt(m) * f^-1(c / sqrt(m))``.
    """
    c = float(sps.t.isf(alpha, df))
    if abs(skew) < 1e-12:
        return c
    s = (3.0 / skew) * (float(np.cbrt(1.0 + skew * (c / math.sqrt(m) - skew / (6 * m)))) - 1.0)
    return max(c, math.sqrt(m) * s)


def power(
    gap: float,
    sd: float,
    m: int,
    alpha: float,
    *,
    skew: float = 0.0,
    df: float | None = None,
    decidable: float = 1.0,
) -> float:
    """Power of the claim test at ``alpha`` with ``m`` units of spread ``sd`` to resolve ``gap``.

    ``skew`` is the units' skewness as seen by the test (negative: against it): the critical value
    is the one the test uses (:func:`_critical`, Hall's correction included). ``decidable`` is the
    probability that the data pass Cochran's rule (:func:`decidable_share`); power is the product.
    A zero ``sd`` gives 1 for a positive gap and 0 otherwise.
    """
    df = m - 1 if df is None else df
    if not sd > 0 or not math.isfinite(gap / sd):
        return 1.0 if gap > 0 else 0.0
    critical = _critical(alpha, df, m, skew)
    return float(decidable * _nct_sf(critical, df, gap * math.sqrt(m) / sd))


def bound_share(clusters: int, rate: float, alpha: float) -> float | None:
    """Smallest mean cluster flip share the all-or-nothing bound of :func:`rate_test` accepts as above ``rate``.

    ``k / G`` with ``P(Binomial(G, rate) >= k) = alpha`` (the continuous extension); None when not even
    every cluster flipping reaches alpha (``rate ** G >= alpha``).
    """
    if rate <= 0:
        return 0.0
    if rate**clusters >= alpha:
        return None
    k = brentq(lambda k: float(sps.beta.cdf(rate, k, clusters - k + 1)) - alpha, 1e-12, clusters, xtol=1e-10)
    return k / clusters


def rate_power(
    gap: float, sd: float, clusters: int, rate: float, alpha: float, *, side: float = 1.0, skew: float = 0.0
) -> float:
    """Power of the grouped flip-rate test (:func:`rate_test`) to resolve ``gap`` from ``rate`` with ``clusters``.

    The test needs both parts: the cluster t (its critical value with Hall's correction at the units'
    ``skew`` as this side's test sees it, ``G - 1`` df) and the estimate beyond the all-or-nothing
    bound (:func:`bound_share`), so the critical t is the larger of the two. ``side`` -1 is the test
    of a rate below ``rate``. 0 when the bound cannot be reached at this G.
    """
    mirrored = rate if side > 0 else 1.0 - rate
    share = bound_share(clusters, mirrored, alpha)
    if share is None:
        return 0.0
    if not sd > 0:
        return 1.0 if gap >= share - mirrored else 0.0
    floor = (share - mirrored) * math.sqrt(clusters) / sd  # the bound in standard errors above the rate
    return _joint_sf(
        _critical(alpha, clusters - 1, clusters, skew), clusters - 1, gap * math.sqrt(clusters) / sd, floor
    )


def _joint_sf(critical: float, df: float, noncentrality: float, floor: float) -> float:
    """``P(T > critical and Z + noncentrality > floor)`` for the noncentral ``T = (Z + noncentrality) / sqrt(V / df)``.

    With ``V`` chi-squared on ``df`` independent of ``Z``: the integral over ``Z`` of the chance that
    the spread estimate is small enough for ``T`` to pass ``critical``.
    """
    start = max(floor, 0.0) - noncentrality

    def integrand(z: float) -> float:
        return float(sps.norm.pdf(z) * sps.chi2.cdf(df * ((z + noncentrality) / critical) ** 2, df))

    if start > 40:
        return 0.0
    value, _ = quad(integrand, start, max(start, 0.0) + 40.0, limit=200)
    return min(1.0, max(0.0, value))


def rate_minimum_detectable(
    sd: float, clusters: int, rate: float, alpha: float, target: float = 0.8, *, side: float = 1.0, skew: float = 0.0
) -> float | None:
    """Smallest gap the grouped flip-rate test resolves with probability ``target``; None if none within [0, 1]."""
    room = (1.0 - rate) if side > 0 else rate

    def short(g: float) -> float:
        return rate_power(g, sd, clusters, rate, alpha, side=side, skew=skew) - target

    return None if short(room) < 0 else float(brentq(short, 0.0, room, xtol=1e-12))


def rate_units_needed(
    gap: float, sd: float, rate: float, alpha: float, target: float = 0.8, *, side: float = 1.0, skew: float = 0.0
) -> int | None:
    """Clusters the grouped flip-rate test needs to resolve ``gap`` with probability ``target`` (None: beyond 2^20)."""
    if gap <= 0:
        return None

    def enough(m: int) -> bool:
        return rate_power(gap, sd, m, rate, alpha, side=side, skew=skew) >= target

    if not enough(2**20):
        return None
    return _smallest(enough, (sps.norm.isf(alpha) + 1) * max(sd, 1e-12) / gap)


def _nct_sf(x: float, df: float, noncentrality: float) -> float:
    """``P(T > x)`` for noncentral t; the normal limit where scipy's series do not converge (huge noncentrality)."""
    if abs(noncentrality) < 1e4:
        value = float(sps.nct.sf(x, df, noncentrality))
        if math.isfinite(value):
            return min(1.0, max(0.0, value))
    return float(sps.norm.sf(x - noncentrality))


def skewness(values: np.ndarray) -> float:
    """Sample skewness with the ddof-1 spread (the convention of every test here); 0 for constant values."""
    x = _scaled(np.asarray(values, dtype=np.float64))
    centred = x - x.mean()
    spread = math.sqrt(float((centred**2).sum()) / (len(x) - 1))
    return float((centred**3).mean() / spread**3) if spread > 1e-12 else 0.0


def decidable_share(
    units_: np.ndarray, side: float = 1.0, *, seed: int = 0, resamples: int = 1000, size: int | None = None
) -> float:
    """Bootstrap estimate of the probability that data like ``units_`` pass Cochran's rule for the ``side`` test.

    ``side`` is +1 for the test of ``mean > 0`` (refused when skewed left), -1 for ``mean < 0``;
    ``size`` is the number of units of the planned sample (default: as many as given).
    """
    x = np.asarray(units_, dtype=np.float64)
    m = len(x) if size is None else int(size)
    if m < SKEW_UNITS or len(x) < 2:
        return 1.0
    rng = np.random.default_rng(seed)
    scaled = _scaled(x)
    refused = 0
    for start in range(0, resamples, max(1, 2_000_000 // m)):  # batches of about 2 million values
        count = min(resamples - start, max(1, 2_000_000 // m))
        draws = scaled[rng.integers(0, len(x), size=(count, m))]
        centred = draws - draws.mean(-1, keepdims=True)
        spread = np.sqrt((centred**2).mean(-1) * m / (m - 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            skew = np.where(spread > 1e-12, (centred**3).mean(-1) / spread**3, 0.0)
        refused += int(((side * skew < 0) & (m < cochran_units(skew))).sum())
    return float(1.0 - refused / resamples)


def minimum_detectable(
    sd: float, m: int, alpha: float, target: float = 0.8, *, skew: float = 0.0, df: float | None = None
) -> float:
    """Smallest gap the claim test resolves with probability ``target`` given ``m`` units (see :func:`power`)."""
    if not sd > 0:
        return 0.0
    high = sd
    while power(high, sd, m, alpha, skew=skew, df=df) < target:
        high *= 2
    return float(brentq(lambda g: power(g, sd, m, alpha, skew=skew, df=df) - target, 0.0, high, xtol=1e-12 * sd))


def units_needed(
    gap: float,
    sd: float,
    alpha: float,
    target: float = 0.8,
    *,
    skew: float = 0.0,
    sample: np.ndarray | None = None,
    side: float = 1.0,
    seed: int = 0,
) -> int | None:
    """Units needed for the claim test to resolve ``gap`` with probability ``target``.

    With ``sample`` (units like the ones observed), the power counts the chance that a sample of
    that size passes Cochran's rule (:func:`decidable_share`). None when the
    gap is too small relative to the spread for any realistic sample.
    """
    if gap <= 0 or sd <= 0 or not math.isfinite(gap / sd):
        return 2
    if gap / sd < 1e-4:  # beyond any realistic sample (more than about 10^9 units)
        return None

    observed = 0.0 if sample is None else abs(skewness(sample))

    def enough(m: int) -> bool:
        share = 1.0
        if sample is not None and m < 4 * cochran_units(observed):  # beyond it resamples pass the rule
            share = decidable_share(sample, side, seed=seed, resamples=400, size=m)
        return power(gap, sd, m, alpha, skew=skew, decidable=share) >= target

    return _smallest(enough, (sps.norm.isf(alpha) + 1) * sd / gap)


def tost_power(estimate: float, within: float, sd: float, m: int, alpha: float, *, df: float | None = None) -> float:
    """Power of the two one-sided tests (equivalence within ``±within``) when the true change is ``estimate``.

    Both tests must reject: ``P(T_low > c) + P(T_high > c) - 1`` with each T noncentral t (the usual
    approximation, exact as the spread estimate becomes precise; floored at 0).
    """
    df = m - 1 if df is None else df
    if not sd > 0:
        return 1.0 if abs(estimate) < within else 0.0
    c = float(sps.t.isf(alpha, df))
    scale = math.sqrt(m) / sd
    low = _nct_sf(c, df, (estimate + within) * scale)
    high = _nct_sf(c, df, (within - estimate) * scale)
    return max(0.0, low + high - 1.0)


def tost_minimum_detectable(sd: float, m: int, alpha: float, target: float = 0.8, *, df: float | None = None) -> float:
    """Smallest margin the two one-sided tests resolve with probability ``target`` when the true change is 0."""
    if not sd > 0:
        return 0.0
    high = sd
    while tost_power(0.0, high, sd, m, alpha, df=df) < target:
        high *= 2
    return float(brentq(lambda w: tost_power(0.0, w, sd, m, alpha, df=df) - target, 0.0, high, xtol=1e-12 * sd))


def tost_units_needed(estimate: float, within: float, sd: float, alpha: float, target: float = 0.8) -> int | None:
    """Units the two one-sided tests need to show equivalence with probability ``target`` at this true change."""
    gap = within - abs(estimate)
    if gap <= 0 or sd <= 0 or not math.isfinite(gap / sd):
        return None if gap <= 0 else 2
    if gap / sd < 1e-4:
        return None
    return _smallest(
        lambda m: tost_power(estimate, within, sd, m, alpha) >= target, (sps.norm.isf(alpha) + 1.3) * sd / gap
    )


def _smallest(enough: Any, guess: float) -> int:
    """The smallest m >= 2 for which ``enough(m)`` (monotone in m), starting from a normal-theory guess."""
    low, high = 2, max(3, math.ceil(min(guess, 1e6) ** 2))
    while not enough(high):
        low, high = high, high * 2
        if high > 2**40:  # beyond any realistic sample
            return 2**40
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if not enough(middle) else (low, middle)
    return high
