"""``mt.Effect`` and its expectations: per-prompt outcomes of an intervention, decided as claims.

Each ``expect_*`` method tests a claim on the paired per-prompt values and returns a
:class:`~mitest.claims.verdict.Verdict` when it HOLDS, or raises :class:`ClaimRefuted` /
:class:`ClaimInconclusive` (both ``AssertionError``, so pytest reports a failed test).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mitest.claims import stats
from mitest.claims.decide import (
    both,
    check_units,
    claim_interval,
    decide,
    either,
    paired_decision,
    unchanged_by_construction,
)
from mitest.claims.verdict import Verdict
from mitest.config import claim_alpha
from mitest.errors import MitestError


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

    def expect_change(self, at_least: float, *, alpha: float | None = None) -> Verdict:
        """Claim: the intervention changes the metric by at least ``at_least`` on average, either way.

        ``|mean(delta)| >= at_least``. HOLDS when "increase by at least" or "decrease by at least"
        holds at ``alpha / 2`` (Bonferroni over the two directions); REFUTED when the data reject both
        at ``alpha`` (the mean change lies inside ``(-at_least, at_least)``); else INCONCLUSIVE. The
        estimate, interval (level ``1 - alpha``) and per-prompt values are the change in the direction
        whose test is the stronger (the observed one).
        """
        __tracebackhide__ = True
        _check_finite(at_least)
        if at_least < 0:
            raise MitestError(f"expect_change needs at_least >= 0 (a size of change, either way), got {at_least}")
        check_units(self)
        a = claim_alpha(alpha)
        size = np.abs(self.clean) + np.abs(self.intervened) + at_least
        exact = unchanged_by_construction(self)
        margins = {+1.0: stats.settle(self.delta - at_least, size), -1.0: stats.settle(-self.delta - at_least, size)}
        up, down = (paired_decision(self, margins[side], a / 2, exact) for side in (1.0, -1.0))
        sign = 1.0 if up.p_holds <= down.p_holds else -1.0  # as either() picks its side
        change, margin = sign * self.delta, margins[sign]
        worst = np.argsort(margin, kind="stable")[:3]
        estimate = float(change.mean())
        return decide(
            self,
            claim=f"mean change of at least {at_least:g} in either direction",
            estimate=estimate,
            interval=claim_interval(self, change, np.ones(self.n), a / 2),
            threshold=float(at_least),
            p=None,
            alpha=a,
            gap=abs(estimate - at_least),
            worst=[(int(i), float(change[i])) for i in worst],
            per_prompt=change,
            decision=either(up, down),
            against=margin < 0,
            margins=margin,
            split=2,
        )

    def expect_no_change(self, *, within: float | None = None, alpha: float | None = None) -> Verdict:
        """Claim: the mean change lies within ``±within`` (equivalence by two one-sided tests).

        The margin is required: "no change" is only testable against a stated tolerance.
        """
        __tracebackhide__ = True
        if within is None or not np.isfinite(within) or within <= 0:
            raise MitestError("expect_no_change needs a positive margin, e.g. expect_no_change(within=0.05)")
        check_units(self)
        a = claim_alpha(alpha)
        size = np.abs(self.clean) + np.abs(self.intervened) + within
        exact = unchanged_by_construction(self)
        above = paired_decision(self, stats.settle(self.delta + within, size), a, exact)
        below = paired_decision(self, stats.settle(within - self.delta, size), a, exact)
        decision = both(above, below)
        worst = np.argsort(-np.abs(self.delta), kind="stable")[:3]
        estimate = float(self.delta.mean())
        outside = stats.settle(np.abs(self.delta) - within, size) > 0
        return decide(
            self,
            claim=f"mean change within ±{within:g}",
            estimate=estimate,
            interval=claim_interval(self, self.delta, np.ones(self.n), a),
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

    def expect_recovery(
        self, at_least: float | None = None, *, at_most: float | None = None, alpha: float | None = None
    ) -> Verdict:
        """Claim: the intervention recovers at least ``at_least`` (or at most ``at_most``) of the clean-vs-base gap.

        Recovery is the ratio of means ``sum(intervened - base) / sum(clean - base)`` with the
        corrupted run as base (a faithfulness score for a patch or circuit), bootstrap CI. ``at_most``
        is the mirror claim, e.g. "by layer 4 the information has left this position": the same
        statistic, tested from the other side. Give exactly one of the two.
        """
        __tracebackhide__ = True
        if (at_least is None) == (at_most is None):
            raise MitestError(
                "expect_recovery needs exactly one bound: expect_recovery(at_least=0.9) or expect_recovery(at_most=0.1)"
            )
        bound = at_least if at_most is None else at_most
        assert bound is not None  # exactly one was given
        return decide_recovery(self, bound, below=at_most is not None, alpha=alpha)

    def expect_flip_rate(self, at_least: float, *, alpha: float | None = None) -> Verdict:
        """Claim: at least a fraction ``at_least`` of prompts change their top-1 prediction.

        Exact binomial test with a Wilson interval; with groups, the cluster-aware paired test.
        """
        __tracebackhide__ = True
        if self.flipped is None:
            raise MitestError("expect_flip_rate needs top-1 flips: use mt.measure or Effect.from_values(flipped=...)")
        if not 0 <= at_least <= 1:
            raise MitestError(f"a flip rate is a fraction in [0, 1], got {at_least}")
        check_units(self)
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
            interval = claim_interval(self, flips, np.ones(n), a)
            test = "CR2 t and all-or-nothing cluster binomial"
        not_flipped = np.flatnonzero(~self.flipped)[:3]
        return decide(
            self,
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
            rate=None if self.groups is None else float(at_least),
        )

    # -- shared machinery --------------------------------------------------------------------

    def _expect_change(self, change: np.ndarray, at_least: float, relative: bool, alpha: float | None, word: str):
        __tracebackhide__ = True
        _check_finite(at_least)
        check_units(self)
        a = claim_alpha(alpha)
        scale = np.abs(self.clean) if relative else np.ones(self.n)
        if relative and scale.sum() == 0:
            raise MitestError("relative=True needs a non-zero clean metric to scale by")
        size = np.abs(self.clean) + np.abs(self.intervened) + abs(at_least) * scale
        margin = stats.settle(change - at_least * scale, size)
        worst = np.argsort(margin, kind="stable")[:3]
        estimate = float(change.sum() / scale.sum())
        return decide(
            self,
            claim=f"mean {word} of at least {at_least:g}" + (" (relative to |clean|)" if relative else ""),
            estimate=estimate,
            interval=claim_interval(self, change, scale, a),
            threshold=float(at_least),
            p=None,
            alpha=a,
            gap=abs(estimate - at_least),
            worst=[(int(i), float(change[i])) for i in worst],
            per_prompt=change / float(scale.mean()),
            decision=paired_decision(self, margin, a, unchanged_by_construction(self)),
            unit_scale=float(scale.mean()),
            against=margin < 0,
            margins=margin,
        )

    def __repr__(self) -> str:
        return (
            f"Effect({self.metric}, n={self.n}, clean mean={self.clean.mean():.4g}, "
            f"intervened mean={self.intervened.mean():.4g}, mean delta={self.delta.mean():.4g})"
        )


def decide_recovery(
    effect: Effect,
    threshold: float,
    *,
    below: bool = False,
    alpha: float | None = None,
    claim: str | None = None,
    curve: dict[str, Any] | None = None,
) -> Verdict:
    """The recovery claim of :meth:`Effect.expect_recovery` on ``effect``: at least ``threshold``, or at
    most with ``below``; ``claim`` words it (default: the generic wording), for claims that are recoveries
    under another name (a faithfulness curve's points, whose ``curve`` the verdict carries to the reports)."""
    __tracebackhide__ = True
    if effect.corrupted is None:
        raise MitestError(
            "expect_recovery needs the base (corrupted) run: measure with Prompts(..., corrupted=...) "
            "or pass Effect.from_values(..., corrupted=...)"
        )
    _check_finite(threshold, "at_most" if below else "at_least")
    check_units(effect)
    gap = effect.clean - effect.corrupted
    recovered = effect.intervened - effect.corrupted
    gap_units = stats.units(gap, effect.groups)
    se = gap_units.std(ddof=1) / np.sqrt(len(gap_units))
    if gap.mean() == 0 or abs(gap_units.mean()) < 3 * se:
        raise MitestError(
            f"the clean-minus-base gap is too small to normalise by (mean {gap.mean():.3g}, standard error "
            f"{se:.3g}); recovery needs a base run that clearly differs from the clean run"
        )
    a = claim_alpha(alpha)
    sign = np.sign(gap.mean())
    size = (
        np.abs(effect.intervened)
        + np.abs(effect.corrupted)
        + abs(threshold) * (np.abs(effect.clean) + np.abs(effect.corrupted))
    )
    side = -1.0 if below else 1.0  # the claim's direction: recovery above the threshold, or below it
    margin = stats.settle(side * sign * (recovered - threshold * gap), size)
    exact = unchanged_by_construction(effect) or unchanged_by_construction(effect, effect.corrupted)
    per_prompt = np.divide(recovered, gap, out=np.full(effect.n, np.nan), where=gap != 0)
    worst = np.argsort(margin, kind="stable")[:3]
    estimate = float(recovered.sum() / gap.sum())
    return decide(
        effect,
        claim=claim or f"recovers at {'most' if below else 'least'} {threshold:g} of the clean-base gap",
        estimate=estimate,
        interval=claim_interval(effect, recovered, gap, a),
        threshold=float(threshold),
        p=None,
        alpha=a,
        gap=abs(estimate - threshold),
        worst=[(int(i), float(per_prompt[i])) for i in worst],
        per_prompt=side * sign * recovered / abs(gap.mean()),
        decision=paired_decision(effect, margin, a, exact),
        unit_scale=abs(float(gap.mean())),
        against=margin < 0,
        margins=margin,
        curve=curve,
        below=below,
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
    check_units(trend)
    worst = np.argsort(tau, kind="stable")[:3]
    return decide(
        trend,
        claim=f"{'increases' if increasing else 'decreases'} monotonically over {k} doses",
        estimate=float(tau.mean()),
        interval=claim_interval(trend, tau, np.ones(first.n), a),
        threshold=0.0,
        p=None,
        alpha=a,
        gap=abs(float(tau.mean())),
        worst=[(int(i), float(tau[i])) for i in worst],
        per_prompt=tau,
        decision=paired_decision(trend, np.asarray(concordance, dtype=np.float64), a),
        unit_scale=float(len(pairs)),
        against=tau < 0,
        margins=np.asarray(concordance, dtype=np.float64),
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


def _check_finite(threshold: float, name: str = "at_least") -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise MitestError(f"{name} must be a number, got {type(threshold).__name__} {threshold!r:.40}")
    if not np.isfinite(threshold):
        raise MitestError(f"{name} must be a finite number, got {threshold}")


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
