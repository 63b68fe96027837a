"""Deciding a claim: the one owner of turning a test's result into a Verdict, recording it, raising.

Every claim ends in :func:`decide` (Effect's ``expect_*``, ``expect_monotonic``, the circuit claims)
or, for a searched claim whose verdict is not a test's, in :func:`publish`. The helpers here are the
pieces claims share: the paired test on per-prompt margins, its p-values, the bootstrap interval, the
unit check and exactness by construction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mitest.claims import stats
from mitest.claims.verdict import HOLDS, INCONCLUSIVE, REFUTED, Verdict
from mitest.config import claim_alpha, current_recorder, settings
from mitest.errors import ClaimInconclusive, ClaimRefuted, MitestError

if TYPE_CHECKING:
    from mitest.claims.effect import Effect


def unchanged_by_construction(effect: Effect, other: np.ndarray | None = None) -> bool:
    """Whether the intervened values equal ``other`` (default: clean) on every prompt: exact by construction."""
    base = effect.clean if other is None else other
    return bool((stats.settle(effect.intervened - base, np.abs(effect.intervened) + np.abs(base)) == 0).all())


def paired_decision(effect: Effect, margin: np.ndarray, alpha: float, exact: bool = False) -> stats.Decision:
    """The claim test on per-prompt margins (claim: mean > 0), on a canonical prompt order."""
    order = np.argsort(margin, kind="stable")
    groups = None if effect.groups is None else effect.groups[order]
    return stats.decide(margin[order], groups, alpha=alpha, exact=exact)


def pvalues(effect: Effect, margin: np.ndarray, alpha: float | None = None) -> tuple[float, float]:
    """p-values for mean(margin) > 0 (the claim) and < 0 (its refutation); a side that cannot be decided gets 1."""
    decision = paired_decision(effect, margin, claim_alpha(alpha))
    return (
        1.0 if decision.refused_holds else float(decision.p_holds),
        1.0 if decision.refused_refuted else float(decision.p_refuted),
    )


def check_units(effect: Effect) -> None:
    """Raise unless the effect has at least 2 independent units (prompts, or clusters with groups)."""
    m = effect.n if effect.groups is None else stats.cluster_codes(effect.groups)[1]
    if m < 2:
        what = "prompts" if effect.groups is None else "groups (clusters)"
        raise MitestError(f"a claim needs at least 2 independent {what}, got {m}")


def claim_interval(
    effect: Effect, numerators: np.ndarray, denominators: np.ndarray, alpha: float
) -> stats.ConfidenceInterval:
    """The bootstrap interval of ``sum(numerators) / sum(denominators)`` at level ``1 - 2 * alpha``."""
    return stats.ratio_interval(numerators, denominators, level=1 - 2 * alpha, groups=effect.groups, seed=settings.seed)


def decide(
    effect: Effect,
    *,
    claim: str,
    estimate: float,
    interval: stats.ConfidenceInterval,
    threshold: float,
    p: tuple[float, float] | None,
    alpha: float,
    gap: float,
    worst: list[tuple[int, float]],
    per_prompt: np.ndarray,
    spread: np.ndarray | None = None,
    test: str | None = None,
    notes: Sequence[str] = (),
    kind: str = "effect",
    decision: stats.Decision | None = None,
    unit_scale: float = 1.0,
    against: np.ndarray | None = None,
    margins: np.ndarray | None = None,
    sweep: dict[str, Any] | None = None,
    curve: dict[str, Any] | None = None,
    agreement: dict[str, Any] | None = None,
    rate: float | None = None,
    below: bool = False,
    split: int = 1,
) -> Verdict:
    """The Verdict on a claim from its test (p-values, or ``decision``, which also says which sides may
    be decided), recorded for the running test; raises ClaimRefuted or ClaimInconclusive unless it HOLDS.

    ``spread`` holds the test's units in the estimate's scale when there is no ``decision``;
    ``unit_scale`` converts the decision's margins to the estimate's scale; ``gap`` is the distance
    between the estimate and the boundary the test must resolve; ``against`` marks the prompts
    that go against the claim, ``margins`` their signed margins (for the few-prompts note); ``rate``
    is a grouped flip-rate claim's rate (its power follows the all-or-nothing bound too); ``sweep``,
    ``curve`` and ``agreement`` are a sweep's cells, a faithfulness curve's points and an attribution's
    checked units (estimate beside exact change), kept for the reports. ``below``
    says the claim puts the estimate below the threshold (an upper bound); ``split`` that it HOLDS on
    one of that many one-sided tests, each at ``alpha / split`` (its power advice uses that level).
    """
    __tracebackhide__ = True
    refusals: tuple[str, ...] = ()
    if p is None:
        assert decision is not None, "a verdict needs p-values or a decision"
        p = (float(decision.p_holds), float(decision.p_refuted))
    p_holds, p_refuted = p
    holds = p_holds < alpha and not (decision and decision.refused_holds)
    refuted = p_refuted < alpha and not (decision and decision.refused_refuted)
    outcome = HOLDS if holds else REFUTED if refuted else INCONCLUSIVE
    if decision is not None and outcome == INCONCLUSIVE:
        refusals = tuple(dict.fromkeys((*decision.refused_holds, *decision.refused_refuted)))
    gap = max(0.0, float(stats.settle(gap, abs(estimate) + abs(threshold))))
    if rate is not None and spread is not None:
        plan = _rate_plan(spread, gap, estimate, rate, alpha)
    else:
        plan = _power_plan(
            decision, spread, unit_scale, gap, estimate, threshold, alpha, kind, effect.groups, margins, below, split
        )
    share = 0.0 if against is None or len(against) == 0 else float(np.mean(against))
    extra = [f"not decided: {reason}" for reason in refusals]
    extra += _few_prompts_note(margins)
    if plan.reason:
        extra.append(plan.reason)
    if not (np.isfinite(interval.low) and np.isfinite(interval.high)):
        extra.append("interval not computable: some resamples have no finite value (a denominator summing to 0)")
    else:
        extra += _interval_note(outcome, interval, threshold, kind, below)
    verdict = Verdict(
        outcome=outcome,
        claim=claim,
        metric=effect.metric,
        estimate=estimate,
        low=interval.low,
        high=interval.high,
        level=interval.level,
        threshold=threshold,
        pvalue=float(p_holds),
        pvalue_refuted=float(p_refuted),
        alpha=alpha,
        n=effect.n,
        clusters=None if effect.groups is None else stats.cluster_codes(effect.groups)[1],
        test=test or _test_name(decision, effect.groups),
        gap=gap,
        power=plan.power,
        mde=plan.mde,
        n_needed=plan.n_needed,
        worst=tuple(worst),
        notes=(*effect.notes, *notes, *extra),
        kind=kind,
        share_against=share,
        sweep=sweep,
        curve=curve,
        agreement=agreement,
    )
    return publish(verdict, effect, per_prompt)


def publish(verdict: Verdict, effect: Effect, per_prompt: np.ndarray) -> Verdict:
    """Record ``verdict`` (decided on ``effect``; ``per_prompt`` are its units) for the running test, then
    return it if it HOLDS, else raise ClaimRefuted or ClaimInconclusive. Every claim kind ends here."""
    __tracebackhide__ = True
    recorder = current_recorder()  # the innermost running test's (pytester nests sessions)
    if recorder is not None:
        recorder(verdict, effect, per_prompt)
    if verdict.outcome == REFUTED:
        raise ClaimRefuted(verdict)
    if verdict.outcome == INCONCLUSIVE:
        raise ClaimInconclusive(verdict)
    return verdict


@dataclass(frozen=True)
class _Plan:
    """Power advice for a verdict, or the reason it cannot be computed."""

    power: float | None
    mde: float | None
    n_needed: int | None
    reason: str = ""


def _power_plan(
    decision: stats.Decision | None,
    spread: np.ndarray | None,
    unit_scale: float,
    gap: float,
    estimate: float,
    threshold: float,
    alpha: float,
    kind: str,
    groups: np.ndarray | None,
    margins: np.ndarray | None,
    below: bool = False,
    split: int = 1,
) -> _Plan:
    """Power, minimum detectable effect and n needed, from the test the verdict used.

    Power includes the chance that data like these pass Cochran's rule (bootstrap); the minimum
    detectable effect and n needed are the test's own (the n needed also satisfies the rules on n).
    """
    if decision is not None:
        m, df = decision.m, decision.df
        sd = float(decision.se) / unit_scale * math.sqrt(m)
        skew = float(decision.skew)
    else:
        assert spread is not None
        m, df, skew = len(spread), len(spread) - 1.0, 0.0
        sd = _scaled_sd(spread)
    if not (math.isfinite(sd) and sd > 0):
        return _Plan(None, None, None, "power not computable: the test's units have no spread")
    units = None if margins is None or decision is None else stats.units(margins, groups)
    rules = stats.min_prompts(alpha) if groups is None and decision is not None else 2
    if kind == "equivalence":
        centre = estimate if math.isfinite(estimate) else 0.0
        decidable = 1.0 if units is None else _decidable(units, 1.0) * _decidable(units, -1.0)
        power = decidable * stats.tost_power(centre, threshold, sd, m, alpha, df=df)
        mde = stats.tost_minimum_detectable(sd, m, alpha, df=df)
        needed = stats.tost_units_needed(centre, threshold, sd, alpha) if gap > 0 else None
        skew_needed = math.ceil(float(stats.cochran_units(skew))) if decision is not None else 0
    else:
        side = 1.0 if (estimate >= threshold) != below else -1.0
        level = alpha / split if side > 0 else alpha  # the level of the test that resolves the gap
        if side > 0 and split > 1 and groups is None and decision is not None:
            rules = stats.min_prompts(level)
        oriented = side * skew  # the skew as the deciding side's test sees it
        decidable = 1.0 if units is None else _decidable(units, side)
        power = stats.power(gap, sd, m, level, skew=oriented, df=df, decidable=decidable)
        mde = stats.minimum_detectable(sd, m, level, skew=oriented, df=df)
        sample = units  # count the chance that a sample of the size advised still fails Cochran's rule
        needed = (
            stats.units_needed(gap, sd, level, skew=oriented, sample=sample, side=side, seed=settings.seed)
            if gap > 0
            else None
        )
        skew_needed = math.ceil(float(stats.cochran_units(oriented))) if decision is not None and oriented < 0 else 0
    if needed is not None:
        needed = max(needed, skew_needed, rules)
    return _Plan(power, mde, needed)


def _rate_plan(spread: np.ndarray, gap: float, estimate: float, rate: float, alpha: float) -> _Plan:
    """Power advice for a grouped flip rate from its test: the cluster t and the all-or-nothing bound."""
    sd, m = _scaled_sd(spread), len(spread)
    if not sd > 0:
        return _Plan(None, None, None, "power not computable: the clusters' flip shares have no spread")
    side = 1.0 if estimate >= rate else -1.0
    skew = side * stats.skewness(spread)  # as the deciding side's test sees it
    power = stats.rate_power(gap, sd, m, rate, alpha, side=side, skew=skew)
    mde = stats.rate_minimum_detectable(sd, m, rate, alpha, side=side, skew=skew)
    needed = stats.rate_units_needed(gap, sd, rate, alpha, side=side, skew=skew) if gap > 0 else None
    reason = ""
    if mde is None:
        reason = (
            f"minimum detectable effect not computable: with {m} clusters the all-or-nothing bound cannot show a "
            f"rate {'above' if side > 0 else 'below'} {rate:g} at 80% power for any true rate"
        )
    return _Plan(power, mde, needed, reason)


def _decidable(units: np.ndarray, side: float) -> float:
    return stats.decidable_share(units, side, seed=settings.seed)


def _scaled_sd(values: np.ndarray) -> float:
    """Sample standard deviation without overflow for huge values."""
    values = np.asarray(values, dtype=np.float64)
    scale = float(np.abs(values).max()) if len(values) else 0.0
    if scale == 0 or len(values) < 2:
        return 0.0
    return float((values / scale).std(ddof=1) * scale)


def _interval_note(
    outcome: str, interval: stats.ConfidenceInterval, threshold: float, kind: str, below: bool = False
) -> list[str]:
    """A note when the bootstrap interval, read as a test, would give another verdict than the test did."""
    low, high = interval.low, interval.high
    if kind == "equivalence":
        says = (
            HOLDS if -threshold < low and high < threshold else REFUTED if low > threshold or high < -threshold else ""
        )
    elif below:
        says = HOLDS if high < threshold else REFUTED if low > threshold else ""
    else:
        says = HOLDS if low > threshold else REFUTED if high < threshold else ""
    says = says or INCONCLUSIVE
    if says == outcome:
        return []
    where = "excludes" if says != INCONCLUSIVE else "includes"
    return [
        f"the {100 * interval.level:.4g}% bootstrap interval [{low:.4g}, {high:.4g}] {where} the threshold "
        f"{'±' if kind == 'equivalence' else ''}{threshold:.4g}, so on its own it would say {says}; the "
        f"test decides the verdict ({outcome}): the interval is an approximate bootstrap, not the test"
    ]


def _few_prompts_note(margins: np.ndarray | None) -> list[str]:
    """A note when a handful of prompts (at most a fifth) carries the opposite sign and offsets much of the rest."""
    if margins is None or len(margins) == 0:
        return []
    direction = 1.0 if margins.sum() >= 0 else -1.0
    opposite = direction * margins < 0
    k, n = int(opposite.sum()), len(margins)
    if k == 0 or k > 0.2 * n:
        return []
    offset = float(np.abs(margins[opposite]).sum() / max(np.abs(margins[~opposite]).sum(), 1e-300))
    if offset < 0.25:
        return []
    return [
        f"{k} of {n} prompts ({k / n:.0%}) go the other way and offset {min(offset, 1.0):.0%} of the rest: the mean "
        "may hide a failure on a few prompts; look at them"
    ]


def _test_name(decision: stats.Decision | None, groups: np.ndarray | None) -> str:
    if decision is not None and groups is not None:
        return "skew-adjusted CR2 t (Bell-McCaffrey df) on clusters"
    return "skew-adjusted paired t" + (" on cluster units" if groups is not None else "")


def either(up: stats.Decision, down: stats.Decision) -> stats.Decision:
    """The two directions of a two-sided change claim (``|mean| >= d``) as one decision (vectorised too).

    ``up`` and ``down`` test "increase by at least d" and "decrease by at least d", each decided at
    ``alpha / 2``: the claim HOLDS when the side with the smaller p-value holds there (its Bonferroni
    p-value ``2 p`` is below alpha), and is REFUTED when both sides are refuted (the larger of their
    p-values is below alpha: an intersection-union test), that is, the mean change lies inside (-d, d).
    """
    first = np.asarray(up.p_holds) <= np.asarray(down.p_holds)

    def pick(a: Any, b: Any) -> Any:  # a scalar for scalar decisions
        return np.asarray(np.where(first, a, b))[()]

    chosen = (up if bool(first) else down) if first.ndim == 0 else None
    return stats.Decision(
        p_holds=np.asarray(np.minimum(1.0, 2 * np.minimum(up.p_holds, down.p_holds)))[()],
        p_refuted=np.asarray(np.maximum(up.p_refuted, down.p_refuted))[()],
        se=pick(up.se, down.se),
        skew=pick(up.skew, down.skew),
        m=up.m,
        df=pick(up.df, down.df),
        method=up.method,
        exact=up.exact,
        short_holds=pick(up.short_holds, down.short_holds),
        short_refuted=np.asarray(up.short_refuted) | np.asarray(down.short_refuted),
        refused_holds=() if chosen is None else chosen.refused_holds,
        refused_refuted=tuple(dict.fromkeys((*up.refused_refuted, *down.refused_refuted))),
    )


def both(above: stats.Decision, below: stats.Decision) -> stats.Decision:
    """The two one-sided tests of equivalence as one decision: both must hold; either refutes."""
    return stats.Decision(
        p_holds=max(float(above.p_holds), float(below.p_holds)),
        p_refuted=min(float(above.p_refuted), float(below.p_refuted)),
        se=above.se,
        skew=above.skew,
        m=above.m,
        df=above.df,
        method=above.method,
        exact=above.exact,
        short_holds=above.short_holds | below.short_holds,
        short_refuted=above.short_refuted & below.short_refuted,
        refused_holds=tuple(dict.fromkeys((*above.refused_holds, *below.refused_holds))),
        refused_refuted=(above if above.p_refuted <= below.p_refuted else below).refused_refuted,
    )
