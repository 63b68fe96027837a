"""``mt.Effect`` and its expectations: per-prompt outcomes of an intervention, decided as claims.

Each ``expect_*`` method tests a claim on the paired per-prompt values and returns a
:class:`~mitest.claims.verdict.Verdict` when it HOLDS, or raises :class:`ClaimRefuted` /
:class:`ClaimInconclusive` (both ``AssertionError``, so pytest reports a failed test).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mitest.claims import stats
from mitest.claims.verdict import HOLDS, INCONCLUSIVE, REFUTED, Verdict
from mitest.config import claim_alpha, current_recorder, settings
from mitest.errors import ClaimInconclusive, ClaimRefuted, MitestError


@dataclass(frozen=True, eq=False)  # numpy fields: equal values are not the same Effect
class Effect:
    """Paired per-prompt metric values: clean vs intervened on the same prompts.

    Attributes:
        clean: metric on the clean prompts with no intervention, one value per prompt.
        intervened: metric with the intervention applied.
        corrupted: metric on the corrupted prompts with no intervention, when prompts have them.
        groups: a cluster label per prompt (template id), or None.
        intervention: the intervention spec as a dict (None for ``from_values``).
        metric: the metric's name.
        hooks: per hook, the site, how often it fired and whether it changed the activation.
        flipped: per prompt, whether the top-1 prediction at the answer position changed.
        identity: what produced the values (model revision, prompt-set hash, intervention and
            metric keys); with the claim and seed it identifies a claim across runs.
        notes: warnings about the values that every verdict on them repeats (e.g. cancellation).
    """

    clean: np.ndarray
    intervened: np.ndarray
    corrupted: np.ndarray | None = None
    groups: np.ndarray | None = None
    intervention: dict[str, Any] | None = None
    metric: str = "value"
    hooks: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    flipped: np.ndarray | None = None
    identity: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("clean", "intervened", "corrupted", "flipped"):
            values = getattr(self, name)
            if values is not None:
                values = np.array(values, dtype=bool if name == "flipped" else np.float64)  # private, read-only
                if name != "flipped" and not np.isfinite(values).all():
                    bad = int(np.flatnonzero(~np.isfinite(values))[0])
                    raise MitestError(f"{name}[{bad}] is {values[bad]}; every value must be finite")
                values.setflags(write=False)
                object.__setattr__(self, name, values)
        _check_differences(self.clean, self.intervened, self.corrupted)

    @classmethod
    def from_values(
        cls,
        clean: Sequence[float] | np.ndarray,
        intervened: Sequence[float] | np.ndarray,
        groups: Sequence[Any] | np.ndarray | None = None,
        *,
        corrupted: Sequence[float] | np.ndarray | None = None,
        flipped: Sequence[bool] | np.ndarray | None = None,
        metric: str = "value",
    ) -> Effect:
        """An Effect from per-prompt numbers computed anywhere (another library, a cluster job).

        ``corrupted`` (the metric on the base run) enables :meth:`expect_recovery`; ``flipped``
        (whether each prompt's top-1 prediction changed) enables :meth:`expect_flip_rate`.
        """
        clean_values = _vector(clean, "clean")
        intervened_values = _vector(intervened, "intervened")
        n = len(clean_values)
        if len(intervened_values) != n:
            raise MitestError(f"clean has {n} values but intervened has {len(intervened_values)}; pair them per prompt")
        corrupted_values = None if corrupted is None else _vector(corrupted, "corrupted")
        if corrupted_values is not None and len(corrupted_values) != n:
            raise MitestError(f"corrupted has {len(corrupted_values)} values for {n} prompts")
        labels = None
        if groups is not None:
            labels = np.empty(len(list(groups)), dtype=object)
            labels[:] = list(groups)
            if len(labels) != n:
                raise MitestError(f"groups has {len(labels)} labels for {n} prompts")
            for i, label in enumerate(labels):
                if label is None or (isinstance(label, float) and label != label) or not stats.hashable(label):
                    raise MitestError(f"groups[{i}] is {label!r:.40}; give every prompt a hashable label (str, int)")
        flips = None
        if flipped is not None:
            flips = np.asarray(flipped)
            if flips.shape != (n,) or flips.dtype != bool:
                raise MitestError(f"flipped must be {n} booleans, one per prompt")
        return cls(clean_values, intervened_values, corrupted_values, labels, None, metric, flipped=flips)

    @property
    def n(self) -> int:
        """Number of prompts."""
        return len(self.clean)

    @property
    def delta(self) -> np.ndarray:
        """Per-prompt ``intervened - clean``."""
        return self.intervened - self.clean

    @property
    def per_prompt(self) -> pd.DataFrame:
        """One row per prompt: clean, intervened, delta, group (and corrupted when known)."""
        frame = pd.DataFrame({"clean": self.clean, "intervened": self.intervened, "delta": self.delta})
        if self.corrupted is not None:
            frame["corrupted"] = self.corrupted
        frame["group"] = self.groups if self.groups is not None else None
        return frame

    # -- claims ----------------------------------------------------------------------------------

    # Public claims and their machinery set ``__tracebackhide__``: a failing claim's traceback in
    # pytest ends at the user's ``expect_*`` line, not inside mitest.

    def expect_increase(self, at_least: float, *, relative: bool = False, alpha: float | None = None) -> Verdict:
        """Claim: the intervention raises the metric by at least ``at_least`` on average.

        HOLDS when the data reject "increase <= at_least", REFUTED when they reject "increase >=
        at_least". With ``relative=True`` the threshold is a fraction of the clean metric's size
        (the estimate is ``mean(delta) / mean(|clean|)``).
        """
        __tracebackhide__ = True
        return self._expect_change(self.delta, at_least, relative, alpha, "increase")

    def expect_decrease(self, at_least: float, *, relative: bool = False, alpha: float | None = None) -> Verdict:
        """Claim: the intervention lowers the metric by at least ``at_least`` on average (see above)."""
        __tracebackhide__ = True
        return self._expect_change(-self.delta, at_least, relative, alpha, "decrease")

    def expect_no_change(self, *, within: float | None = None, alpha: float | None = None) -> Verdict:
        """Claim: the mean change lies within ``±within`` (equivalence by two one-sided tests).

        The margin is required: "no change" is only testable against a stated tolerance.
        """
        __tracebackhide__ = True
        if within is None or not np.isfinite(within) or within <= 0:
            raise MitestError("expect_no_change needs a positive margin, e.g. expect_no_change(within=0.05)")
        self._check_units()
        a = claim_alpha(alpha)
        size = np.abs(self.clean) + np.abs(self.intervened) + within
        exact = self._exact()
        above = self._decide(stats.settle(self.delta + within, size), a, exact)
        below = self._decide(stats.settle(within - self.delta, size), a, exact)
        decision = _both(above, below)
        worst = np.argsort(-np.abs(self.delta), kind="stable")[:3]
        estimate = float(self.delta.mean())
        outside = stats.settle(np.abs(self.delta) - within, size) > 0
        return self._conclude(
            claim=f"mean change within ±{within:g}",
            estimate=estimate,
            interval=self._interval(self.delta, np.ones(self.n), a),
            threshold=float(within),
            p=(decision.p_holds, decision.p_refuted),
            alpha=a,
            gap=within - abs(estimate),  # the nearer margin decides equivalence
            worst=[(int(i), float(self.delta[i])) for i in worst],
            per_prompt=-np.abs(self.delta),
            kind="equivalence",
            decision=decision,
            against=outside,
            margins=self.delta,
        )

    def expect_recovery(self, at_least: float, *, alpha: float | None = None) -> Verdict:
        """Claim: the intervention recovers at least ``at_least`` of the clean-vs-base gap.

        Recovery is the ratio of means ``sum(intervened - base) / sum(clean - base)`` with the
        corrupted run as base (a faithfulness score for a patch or circuit), bootstrap CI.
        """
        __tracebackhide__ = True
        if self.corrupted is None:
            raise MitestError(
                "expect_recovery needs the base (corrupted) run: measure with Prompts(..., corrupted=...) "
                "or pass Effect.from_values(..., corrupted=...)"
            )
        _check_finite(at_least)
        self._check_units()
        gap = self.clean - self.corrupted
        recovered = self.intervened - self.corrupted
        gap_units = stats.units(gap, self.groups)
        se = gap_units.std(ddof=1) / np.sqrt(len(gap_units))
        if gap.mean() == 0 or abs(gap_units.mean()) < 3 * se:
            raise MitestError(
                f"the clean-minus-base gap is too small to normalise by (mean {gap.mean():.3g}, standard error "
                f"{se:.3g}); recovery needs a base run that clearly differs from the clean run"
            )
        a = claim_alpha(alpha)
        sign = np.sign(gap.mean())
        size = (
            np.abs(self.intervened)
            + np.abs(self.corrupted)
            + abs(at_least) * (np.abs(self.clean) + np.abs(self.corrupted))
        )
        margin = stats.settle(sign * (recovered - at_least * gap), size)
        exact = self._exact() or self._exact(self.corrupted)
        per_prompt = np.divide(recovered, gap, out=np.full(self.n, np.nan), where=gap != 0)
        worst = np.argsort(margin, kind="stable")[:3]
        estimate = float(recovered.sum() / gap.sum())
        return self._conclude(
            claim=f"recovers at least {at_least:g} of the clean-base gap",
            estimate=estimate,
            interval=self._interval(recovered, gap, a),
            threshold=float(at_least),
            p=None,
            alpha=a,
            gap=abs(estimate - at_least),
            worst=[(int(i), float(per_prompt[i])) for i in worst],
            per_prompt=sign * recovered / abs(gap.mean()),
            decision=self._decide(margin, a, exact),
            unit_scale=abs(float(gap.mean())),
            against=margin < 0,
            margins=margin,
        )

    def expect_flip_rate(self, at_least: float, *, alpha: float | None = None) -> Verdict:
        """Claim: at least a fraction ``at_least`` of prompts change their top-1 prediction.

        Exact binomial test with a Wilson interval; with groups, the cluster-aware paired test.
        """
        __tracebackhide__ = True
        if self.flipped is None:
            raise MitestError("expect_flip_rate needs top-1 flips: use mt.measure or Effect.from_values(flipped=...)")
        if not 0 <= at_least <= 1:
            raise MitestError(f"a flip rate is a fraction in [0, 1], got {at_least}")
        self._check_units()
        a = claim_alpha(alpha)
        k, n = int(self.flipped.sum()), self.n
        if self.groups is None:
            p = (
                stats.binomial_test(k, n, at_least, "greater").pvalue,
                stats.binomial_test(k, n, at_least, "less").pvalue,
            )
            interval, test = stats.wilson_interval(k, n, 1 - 2 * a), "exact binomial"
        else:
            flips = self.flipped.astype(float)
            p = (
                float(stats.rate_test(flips, self.groups, at_least, "greater").pvalue),
                float(stats.rate_test(flips, self.groups, at_least, "less").pvalue),
            )
            interval = self._interval(flips, np.ones(n), a)
            test = "CR2 t and all-or-nothing cluster binomial"
        not_flipped = np.flatnonzero(~self.flipped)[:3]
        return self._conclude(
            claim=f"top-1 flips on at least {at_least:.0%} of prompts",
            estimate=k / n,
            interval=interval,
            threshold=float(at_least),
            p=p,
            alpha=a,
            spread=stats.units(self.flipped.astype(float), self.groups),
            gap=abs(k / n - at_least),
            worst=[(int(i), 0.0) for i in not_flipped],
            per_prompt=self.flipped.astype(float),
            test=test,
            against=~self.flipped,
        )

    # -- shared machinery --------------------------------------------------------------------

    def _expect_change(self, change: np.ndarray, at_least: float, relative: bool, alpha: float | None, word: str):
        __tracebackhide__ = True
        _check_finite(at_least)
        self._check_units()
        a = claim_alpha(alpha)
        scale = np.abs(self.clean) if relative else np.ones(self.n)
        if relative and scale.sum() == 0:
            raise MitestError("relative=True needs a non-zero clean metric to scale by")
        size = np.abs(self.clean) + np.abs(self.intervened) + abs(at_least) * scale
        margin = stats.settle(change - at_least * scale, size)
        worst = np.argsort(margin, kind="stable")[:3]
        estimate = float(change.sum() / scale.sum())
        return self._conclude(
            claim=f"mean {word} of at least {at_least:g}" + (" (relative to |clean|)" if relative else ""),
            estimate=estimate,
            interval=self._interval(change, scale, a),
            threshold=float(at_least),
            p=None,
            alpha=a,
            gap=abs(estimate - at_least),
            worst=[(int(i), float(change[i])) for i in worst],
            per_prompt=change / float(scale.mean()),
            decision=self._decide(margin, a, self._exact()),
            unit_scale=float(scale.mean()),
            against=margin < 0,
            margins=margin,
        )

    @staticmethod
    def _settle(margin: np.ndarray, size: np.ndarray | float) -> np.ndarray:
        """Zero the margins numerically equal to 0 (:func:`mitest.claims.stats.settle`, the one definition)."""
        return stats.settle(margin, size)

    def _exact(self, other: np.ndarray | None = None) -> bool:
        """Whether the intervened values equal ``other`` (default: clean) on every prompt: exact by construction."""
        base = self.clean if other is None else other
        return bool((stats.settle(self.intervened - base, np.abs(self.intervened) + np.abs(base)) == 0).all())

    def _decide(self, margin: np.ndarray, alpha: float, exact: bool = False) -> stats.Decision:
        """The claim test on per-prompt margins (claim: mean > 0), on a canonical prompt order."""
        order = np.argsort(margin, kind="stable")
        groups = None if self.groups is None else self.groups[order]
        return stats.decide(margin[order], groups, alpha=alpha, exact=exact)

    def _p(self, margin: np.ndarray, alpha: float | None = None) -> tuple[float, float]:
        """p-values for mean(margin) > 0 (the claim) and < 0 (its refutation); a side that cannot be decided gets 1."""
        decision = self._decide(margin, claim_alpha(alpha))
        return (
            1.0 if decision.refused_holds else float(decision.p_holds),
            1.0 if decision.refused_refuted else float(decision.p_refuted),
        )

    def _check_units(self) -> None:
        m = self.n if self.groups is None else stats.cluster_codes(self.groups)[1]
        if m < 2:
            what = "prompts" if self.groups is None else "groups (clusters)"
            raise MitestError(f"a claim needs at least 2 independent {what}, got {m}")

    def _interval(self, numerators: np.ndarray, denominators: np.ndarray, alpha: float) -> stats.ConfidenceInterval:
        return stats.ratio_interval(
            numerators, denominators, level=1 - 2 * alpha, groups=self.groups, seed=settings.seed
        )

    def _conclude(
        self,
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
    ) -> Verdict:
        """Decide from the p-values (or ``decision``, which also says which sides may be decided).

        ``spread`` holds the test's units in the estimate's scale when there is no ``decision``;
        ``unit_scale`` converts the decision's margins to the estimate's scale; ``gap`` is the distance
        between the estimate and the boundary the test must resolve; ``against`` marks the prompts
        that go against the claim, ``margins`` their signed margins (for the few-prompts note).
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
        plan = _power_plan(decision, spread, unit_scale, gap, estimate, threshold, alpha, kind, self.groups, margins)
        share = 0.0 if against is None or len(against) == 0 else float(np.mean(against))
        extra = [f"not decided: {reason}" for reason in refusals]
        extra += _few_prompts_note(margins)
        if plan.reason:
            extra.append(plan.reason)
        if not (np.isfinite(interval.low) and np.isfinite(interval.high)):
            extra.append("interval not computable: some resamples have no finite value (a denominator summing to 0)")
        verdict = Verdict(
            outcome=outcome,
            claim=claim,
            metric=self.metric,
            estimate=estimate,
            low=interval.low,
            high=interval.high,
            level=interval.level,
            threshold=threshold,
            pvalue=float(p_holds),
            pvalue_refuted=float(p_refuted),
            alpha=alpha,
            n=self.n,
            clusters=None if self.groups is None else stats.cluster_codes(self.groups)[1],
            test=test or _test_name(decision, self.groups),
            gap=gap,
            power=plan.power,
            mde=plan.mde,
            n_needed=plan.n_needed,
            worst=tuple(worst),
            notes=(*self.notes, *notes, *extra),
            kind=kind,
            share_against=share,
        )
        recorder = current_recorder()  # the innermost running test's (pytester nests sessions)
        if recorder is not None:
            recorder(verdict, self, per_prompt)
        if outcome == REFUTED:
            raise ClaimRefuted(verdict)
        if outcome == INCONCLUSIVE:
            raise ClaimInconclusive(verdict)
        return verdict

    def __repr__(self) -> str:
        return (
            f"Effect({self.metric}, n={self.n}, clean mean={self.clean.mean():.4g}, "
            f"intervened mean={self.intervened.mean():.4g}, mean delta={self.delta.mean():.4g})"
        )


def expect_monotonic(effects: Sequence[Effect], *, increasing: bool = True, alpha: float | None = None) -> Verdict:
    """Claim: the intervened metric rises (or falls) along a sequence of Effects on the same prompts.

    For dose-response claims such as steering at growing coefficients. Each prompt's trend is its
    Kendall tau between dose order and value; the claim HOLDS when the mean tau is significantly
    above 0 (the paired, cluster-aware test), REFUTED when significantly below.
    """
    __tracebackhide__ = True
    effects = list(effects)
    if len(effects) < 2:
        raise MitestError("expect_monotonic needs at least 2 effects, in dose order")
    first = effects[0]
    for effect in effects[1:]:
        if effect.n != first.n or not np.array_equal(effect.clean, first.clean):
            raise MitestError("expect_monotonic compares effects on the same prompts: their clean values differ")
        if (effect.groups is None) != (first.groups is None) or (
            effect.groups is not None and first.groups is not None and not np.array_equal(effect.groups, first.groups)
        ):
            raise MitestError("expect_monotonic compares effects on the same prompts: their groups differ")
    values = np.stack([e.intervened for e in effects], axis=1)
    k = values.shape[1]
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    # Concordant minus discordant dose pairs per prompt: integers, so no rounding enters the test; two
    # doses whose values are numerically equal are a tie.
    steps = [stats.settle(values[:, j] - values[:, i], np.abs(values[:, j]) + np.abs(values[:, i])) for i, j in pairs]
    concordance = sum(np.sign(step) for step in steps) * (1.0 if increasing else -1.0)
    tau = concordance / len(pairs)
    a = claim_alpha(alpha)
    trend = Effect.from_values(
        first.clean, first.clean + tau, groups=first.groups, metric=f"kendall tau of {first.metric}"
    )
    trend._check_units()
    worst = np.argsort(tau, kind="stable")[:3]
    return trend._conclude(
        claim=f"{'increases' if increasing else 'decreases'} monotonically over {k} doses",
        estimate=float(tau.mean()),
        interval=trend._interval(tau, np.ones(first.n), a),
        threshold=0.0,
        p=None,
        alpha=a,
        gap=abs(float(tau.mean())),
        worst=[(int(i), float(tau[i])) for i in worst],
        per_prompt=tau,
        decision=trend._decide(np.asarray(concordance, dtype=np.float64), a),
        unit_scale=float(len(pairs)),
        against=tau < 0,
        margins=np.asarray(concordance, dtype=np.float64),
    )


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
        side = 1.0 if estimate >= threshold else -1.0
        oriented = side * skew  # the skew as the deciding side's test sees it
        decidable = 1.0 if units is None else _decidable(units, side)
        power = stats.power(gap, sd, m, alpha, skew=oriented, df=df, decidable=decidable)
        mde = stats.minimum_detectable(sd, m, alpha, skew=oriented, df=df)
        sample = units if units is not None and oriented < 0 else None  # skewed against: count Cochran's rule
        needed = (
            stats.units_needed(gap, sd, alpha, skew=oriented, sample=sample, side=side, seed=settings.seed)
            if gap > 0
            else None
        )
        skew_needed = math.ceil(float(stats.cochran_units(oriented))) if decision is not None and oriented < 0 else 0
    if needed is not None:
        needed = max(needed, skew_needed, rules)
    return _Plan(power, mde, needed)


def _decidable(units: np.ndarray, side: float) -> float:
    return stats.decidable_share(units, side, seed=settings.seed)


def _scaled_sd(values: np.ndarray) -> float:
    """Sample standard deviation without overflow for huge values."""
    values = np.asarray(values, dtype=np.float64)
    scale = float(np.abs(values).max()) if len(values) else 0.0
    if scale == 0 or len(values) < 2:
        return 0.0
    return float((values / scale).std(ddof=1) * scale)


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


def _both(above: stats.Decision, below: stats.Decision) -> stats.Decision:
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


def _check_differences(clean: np.ndarray, intervened: np.ndarray, corrupted: np.ndarray | None) -> None:
    """The paired differences a claim is computed from must be finite floats (no overflow)."""
    pairs = [("intervened - clean", intervened, clean)]
    if corrupted is not None:
        pairs += [("clean - corrupted", clean, corrupted), ("intervened - corrupted", intervened, corrupted)]
    with np.errstate(over="ignore"):
        for label, a, b in pairs:
            if len(a) == len(b) and not np.isfinite(a - b).all() or not np.isfinite(np.abs(a).sum() + np.abs(b).sum()):
                raise MitestError(
                    f"{label} overflows float64 (values near {float(np.abs(a).max()):.3g}); rescale the metric, "
                    "e.g. divide every value by 1e300"
                )


def _check_finite(threshold: float) -> None:
    if not np.isfinite(threshold):
        raise MitestError(f"at_least must be a finite number, got {threshold}")


def _vector(values: Any, label: str) -> np.ndarray:
    try:
        array = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=np.float64)
    except (TypeError, ValueError):
        raise MitestError(f"{label} must be numbers, one per prompt") from None
    if array.ndim != 1 or len(array) == 0:
        raise MitestError(f"{label} must be a non-empty 1-D sequence of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise MitestError(f"{label}[{bad}] is {array[bad]}; every value must be finite")
    return array
