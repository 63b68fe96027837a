"""Claims on readings: per-prompt values measured without an intervention (an attention mass, a head
score, a neuron's activation), against a threshold or between two prompt sets.

A reading is an :class:`~mitest.claims.effect.Effect` whose clean and intervened values are the
same measured values (nothing was intervened on), so it is recorded, reported and gated like every
claim. A level claim is the one-sample mean test every mean claim uses, on ``value - threshold``;
several levels at once (e.g. one per head) are Holm-adjusted together, as a sweep's cells are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mitest.claims import stats
from mitest.claims.decide import claim_interval, decide, paired_decision, pvalues
from mitest.claims.effect import Effect
from mitest.claims.verdict import Verdict
from mitest.config import claim_alpha
from mitest.errors import MitestError


def reading(
    values: np.ndarray,
    *,
    metric: str,
    groups: np.ndarray | None = None,
    identity: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
) -> Effect:
    """The Effect of a reading: ``values`` (one per prompt) as both its clean and intervened values."""
    return Effect(values, values, groups=groups, intervention=spec, metric=metric, identity=identity)


@dataclass(frozen=True)
class Level:
    """One part of a level claim: the mean of ``effect``'s values is above ``threshold`` (``above``) or below it."""

    effect: Effect
    threshold: float
    above: bool = True
    label: str = ""

    def __post_init__(self) -> None:
        if not np.isfinite(self.threshold):
            raise MitestError(f"a level claim's threshold must be a finite number, got {self.threshold}")

    @property
    def values(self) -> np.ndarray:
        return self.effect.clean

    @property
    def margin(self) -> np.ndarray:
        """Per prompt, how far its value lies on the claim's side of the threshold."""
        sign = 1.0 if self.above else -1.0
        return stats.settle(sign * (self.values - self.threshold), np.abs(self.values) + abs(self.threshold))

    @property
    def wanted(self) -> str:
        return f"{'at least' if self.above else 'below'} {self.threshold:g}"


def expect_levels(levels: Sequence[Level], *, claim: str, alpha: float | None = None) -> Verdict:
    """Claim: every level holds (each part's mean on its side of its threshold), Holm over the parts.

    The verdict is the weakest part's (its estimate, interval and prompts); it HOLDS when every
    part's adjusted p(holds) is below alpha and is REFUTED when some part's adjusted p(refuted) is.
    """
    __tracebackhide__ = True
    if not levels:
        raise MitestError("a level claim needs at least one part")
    a = claim_alpha(alpha)
    pairs = [pvalues(level.effect, level.margin, a) for level in levels]
    p_holds = stats.holm([p for p, _ in pairs])
    p_refuted = stats.holm([p for _, p in pairs])
    weakest = levels[int(np.argmax(p_holds))]
    effect, values, margin = weakest.effect, weakest.values, weakest.margin
    failing = [k for k, p in enumerate(p_holds) if p >= a] if len(levels) > 1 else []
    notes = [
        f"{levels[k].label}: mean {levels[k].values.mean():.4g} ({levels[k].wanted}), "
        f"Holm p(holds) {p_holds[k]:.2g}, p(refuted) {p_refuted[k]:.2g}"
        for k in failing[:10]
    ]
    if len(failing) > 10:
        notes.append(f"... and {len(failing) - 10} more parts not shown to hold")
    worst = np.argsort(margin, kind="stable")[:3]
    estimate = float(values.mean())
    grouped = " on cluster units" if effect.groups is not None else ""
    return decide(
        effect,
        claim=claim,
        estimate=estimate,
        interval=claim_interval(effect, values, np.ones(effect.n), a),
        threshold=float(weakest.threshold),
        p=(float(p_holds.max()), float(p_refuted.min())),
        alpha=a,
        decision=paired_decision(effect, margin, a),
        margins=margin,
        against=margin < 0,
        gap=abs(estimate - weakest.threshold),
        worst=[(int(k), float(values[k])) for k in worst],
        per_prompt=values if weakest.above else -values,  # oriented as every claim's units: larger is more for it
        test=None if len(levels) == 1 else f"skew-adjusted t per part, Holm over {len(levels)}{grouped}",
        notes=notes,
    )


def expect_difference(
    first: np.ndarray,
    second: np.ndarray,
    at_least: float,
    *,
    claim: str,
    metric: str,
    identity: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
    alpha: float | None = None,
) -> Verdict:
    """Claim: ``mean(first) - mean(second) > at_least`` for two independent prompt sets (Welch t).

    The claim's units, as recorded and gated, are ``n / n_first * first`` and ``-n / n_second *
    second`` (``n`` both sets' sizes), whose mean is the difference of the means.
    """
    __tracebackhide__ = True
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if not np.isfinite(at_least):
        raise MitestError(f"at_least must be a finite number, got {at_least}")
    if min(len(first), len(second)) < 2:
        raise MitestError(
            f"a two-sample claim needs at least 2 prompts in each set, got {len(first)} and {len(second)}"
        )
    a = claim_alpha(alpha)
    n = len(first) + len(second)
    units = np.concatenate([first * (n / len(first)), -second * (n / len(second))])
    effect = reading(units, metric=metric, identity=identity, spec=spec)
    decision = stats.welch_decision(first, second, at_least, alpha=a)
    estimate = float(first.mean() - second.mean())
    low_first = np.argsort(first, kind="stable")[:2]
    high_second = np.argsort(-second, kind="stable")[:1]
    worst = [(int(i), float(first[i])) for i in low_first] + [
        (len(first) + int(i), float(second[i])) for i in high_second
    ]
    return decide(
        effect,
        claim=claim,
        estimate=estimate,
        interval=stats.welch_interval(first, second, level=1 - 2 * a),
        threshold=float(at_least),
        p=None,
        alpha=a,
        decision=decision,
        gap=abs(estimate - at_least),
        worst=worst,
        per_prompt=units,
        against=np.concatenate([first < second.mean() + at_least, second > first.mean() - at_least]),
        test=f"Welch t ({len(first)} vs {len(second)} prompts)",
    )
