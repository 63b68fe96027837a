"""Verdicts: HOLDS, REFUTED or INCONCLUSIVE, with the numbers behind them and a readable summary."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mitest.claims.stats import ConfidenceInterval

HOLDS, REFUTED, INCONCLUSIVE = "HOLDS", "REFUTED", "INCONCLUSIVE"


@dataclass(frozen=True)
class Verdict:
    """The decision on one claim (scipy style: named fields, plus :meth:`confidence_interval`).

    ``pvalue`` is the evidence for the claim (small: HOLDS); ``pvalue_refuted`` the evidence
    against it (small: REFUTED). The interval has level ``1 - 2 * alpha``, matching the one-sided
    tests. ``gap`` is the distance between the estimate and the boundary the test must resolve
    (for equivalence, the nearer margin); ``power`` is the power to resolve it at this n, ``mde``
    the smallest such distance detectable with 80% power, and ``n_needed`` the n that would
    resolve the observed gap. ``notes`` are warnings about the data behind the verdict (for example
    cancellation in a causal scrubbing run), shown in the summary and the reports. ``kind`` is
    ``"equivalence"`` for claims that an effect stays within a margin (two-sided, TOST), ``"property"``
    for a searched property (its units are the examples tried), ``"sampled"`` for a comparison with
    random circuits (its units are the draws), else ``"effect"``. ``share_against`` is the share of
    prompts (or units) whose own value goes against the claim. ``power``, ``mde`` and ``n_needed`` are
    None when they cannot be computed; a note then says why.
    """

    outcome: str
    claim: str
    metric: str
    estimate: float
    low: float
    high: float
    level: float
    threshold: float
    pvalue: float
    pvalue_refuted: float
    alpha: float
    n: int
    clusters: int | None
    test: str
    gap: float
    power: float | None
    mde: float | None
    n_needed: int | None
    worst: tuple[tuple[int, float], ...]
    notes: tuple[str, ...] = ()
    kind: str = "effect"
    share_against: float = 0.0
    sweep: dict[str, Any] | None = None  # a sweep claim's cells, for reports and heatmaps
    curve: dict[str, Any] | None = None  # a faithfulness-curve claim's points and area, for reports
    agreement: dict[str, Any] | None = None  # an attribution claim's estimates beside exact patching

    @property
    def holds(self) -> bool:
        """True when the claim HOLDS."""
        return self.outcome == HOLDS

    def confidence_interval(self) -> ConfidenceInterval:
        """The interval around :attr:`estimate`."""
        return ConfidenceInterval(self.low, self.high, self.level)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready data."""
        data = asdict(self)
        data["worst"] = [list(item) for item in self.worst]
        data["notes"] = list(self.notes)
        return data

    def summary(self) -> str:
        """A short, readable account: claim, estimate, interval, p-values, n, and the worst prompts."""
        if self.metric == "property":  # searched, not estimated: no interval or p-value to show
            held = f"held on {_num(self.estimate * self.n)} of {self.n} prompts tried"
            lines = [f"{self.outcome}: {self.claim}", f"  {self.test}; {held}"]
            return "\n".join(lines + [f"  note: {note}" for note in self.notes])
        units = f"{self.n} prompts" + (f" in {self.clusters} clusters" if self.clusters else "")
        lines = [
            f"{self.outcome}: {self.claim} [{self.metric}]",
            f"  estimate {_num(self.estimate)}, {_percent(self.level)} CI [{_num(self.low)}, {_num(self.high)}], "
            f"threshold {_num(self.threshold)}",
            f"  p(holds) = {_p(self.pvalue)}, p(refuted) = {_p(self.pvalue_refuted)}, alpha = {self.alpha:.3g}, "
            f"n = {units} ({self.test}); {_percent_plain(self.share_against)} of them against the claim",
        ]
        if self.worst:
            listed = ", ".join(f"#{index} ({_num(value)})" for index, value in self.worst)
            lines.append(f"  prompts most against the claim: {listed}")
        if self.outcome == INCONCLUSIVE and self.mde is not None:
            unit = "clusters" if self.clusters else "n"
            m = self.clusters or self.n
            advice = f"with {unit}={m} the smallest effect this test detects at 80% power is {_num(self.mde)}"
            if self.n_needed and self.gap > 0:
                advice += f"; use {unit}>={self.n_needed} for {_num(self.gap)}"
            lines.append("  " + advice)
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _num(value: float) -> str:
    return f"{value:.4g}"


def _percent_plain(share: float) -> str:
    return f"{share:.0%}" if share == 0 or share >= 0.01 else f"{share:.1%}"


def _p(value: float) -> str:
    return f"{value:.2g}" if value >= 1e-4 else f"{value:.1e}"


def _percent(level: float) -> str:
    """A confidence level as a percentage that never rounds up to 100% (0.99566 -> '99.6%')."""
    digits = 0
    while digits < 6 and round(level * 100, digits) >= 100:
        digits += 1
    return f"{level * 100:.{digits}f}%"
