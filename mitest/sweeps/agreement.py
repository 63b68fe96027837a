"""Whether gradient estimates rank units (cells or edges) as exact patching does: one claim for both.

:class:`RankAgreement` holds what both kinds of agreement share (Spearman's rho, the top sets, the
table and the claim); :class:`~mitest.sweeps.attribution.Agreement` (cells, checked by one sweep) and
:class:`~mitest.sweeps.edge_attribution.EdgeAgreement` (edges, checked by path patching) supply the
checked units, their estimates and their exact changes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from mitest.claims import stats
from mitest.claims.decide import decide
from mitest.claims.effect import Effect
from mitest.claims.verdict import Verdict
from mitest.config import claim_alpha, settings
from mitest.errors import MitestError


class RankAgreement:
    """Estimates of some units next to exact patching of the checked ones; subclasses supply the data.

    A subclass has ``top_k`` and ``estimator`` (an attribution: ``ranking()``, ``prompts``,
    ``identity``, ``method``, ``steps``, ``len()``) and defines :attr:`names`, :attr:`estimates`,
    :attr:`changes`, :attr:`effects` and :attr:`intervention`.
    """

    unit: ClassVar[str] = "cell"
    top_k: int
    estimator: Any

    @property
    def names(self) -> list[str]:
        """The checked units."""
        raise NotImplementedError

    @property
    def estimates(self) -> np.ndarray:
        """``[checked units, prompts]`` estimates."""
        raise NotImplementedError

    @property
    def changes(self) -> np.ndarray:
        """``[checked units, prompts]`` exact changes of the metric."""
        raise NotImplementedError

    @property
    def effects(self) -> list[Effect]:
        """The exact Effect of each checked unit."""
        raise NotImplementedError

    @property
    def intervention(self) -> dict[str, Any]:
        """What the claim's record says was intervened on (the estimator's template)."""
        raise NotImplementedError

    @property
    def rank_correlation(self) -> float:
        """Spearman's rho between the checked units' mean estimate and mean exact change."""
        return float(scipy_stats.spearmanr(self.estimates.mean(1), self.changes.mean(1)).statistic)

    def top(self) -> tuple[list[str], list[str]]:
        """The top ``top_k`` units by estimate and by exact patching (among the checked units)."""
        by_estimate = self.estimator.ranking()[: self.top_k]
        order = np.argsort(-np.abs(self.changes.mean(1)), kind="stable")
        return by_estimate, [self.names[i] for i in order[: self.top_k]]

    def frame(self) -> pd.DataFrame:
        """One row per checked unit: its role (top by estimate, or sampled), both means and their ranks."""
        estimate, exact = self.estimates.mean(1), self.changes.mean(1)
        by_estimate, _ = self.top()
        frame = pd.DataFrame(
            {
                self.unit: self.names,
                "role": ["top" if name in by_estimate else "sample" for name in self.names],
                "attribution": estimate,
                "exact": exact,
                "difference": estimate - exact,
            }
        )
        frame["rank_attribution"] = (-np.abs(estimate)).argsort(kind="stable").argsort(kind="stable") + 1
        frame["rank_exact"] = (-np.abs(exact)).argsort(kind="stable").argsort(kind="stable") + 1
        return frame

    def expect_agrees(self, *, rank_correlation_at_least: float, alpha: float | None = None) -> Verdict:
        """Claim: the top ``top_k`` by estimate are the top ``top_k`` by exact patching (on these
        prompts), and Spearman's rho of the checked units' means is at least ``rank_correlation_at_least``.

        REFUTED, naming the units, when the top sets differ; otherwise decided on a bootstrap of rho over
        prompts (over clusters when the prompts have groups) at level ``1 - 2 * alpha``: HOLDS when the
        interval's lower end clears the bound, REFUTED when its upper end is below it.
        """
        __tracebackhide__ = True
        bound = rank_correlation_at_least
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not -1 <= bound < 1:
            raise MitestError(f"rank_correlation_at_least must be a number in [-1, 1), got {bound!r}")
        a = claim_alpha(alpha)
        attributed, exact = self.estimates, self.changes
        rho = self.rank_correlation
        if not np.isfinite(rho):
            raise MitestError(
                f"Spearman's rho is undefined: the checked {self.unit}s' mean attributions or exact effects are all "
                "equal; check more of them (a larger top_k or sample)"
            )
        groups = self.estimator.prompts.groups
        boot = _bootstrap(attributed, exact, groups, stats.resamples_for(a), settings.seed)
        low, high = (float(v) for v in np.nanquantile(boot, [a, 1 - a])) if np.isfinite(boot).any() else (rho, rho)
        p_holds = float(1 + np.sum(~(boot > bound))) / (len(boot) + 1)  # a NaN resample counts against both
        p_refuted = float(1 + np.sum(~(boot < bound))) / (len(boot) + 1)
        by_estimate, by_exact = self.top()
        notes = _misranked(self, by_estimate, by_exact)
        if notes:  # the top sets differ on these prompts: refuted, whatever rho says
            p_holds, p_refuted = 1.0, 0.0
        pseudo = _pseudo_values(attributed, exact, rho)
        worst = np.argsort(pseudo, kind="stable")[:3]
        effect = replace(
            self.effects[self.names.index(by_exact[0])],
            identity=self.estimator.identity,
            intervention=self.intervention,
        )
        method = self.estimator.method
        if method.endswith("ig"):
            method += f" ({self.estimator.steps} steps)"
        return decide(
            effect,
            claim=(
                f"{method} attribution agrees with exact patching: its top {self.top_k} of "
                f"{len(self.estimator)} {self.unit}s are patching's, and Spearman's rho over {len(self.names)} "
                f"checked {self.unit}s is at least {bound:g}"
            ),
            estimate=rho,
            interval=stats.ConfidenceInterval(low, high, 1 - 2 * a),
            threshold=float(bound),
            p=(float(min(1.0, p_holds)), float(min(1.0, p_refuted))),
            alpha=a,
            gap=abs(rho - bound),
            worst=[(int(k), float(pseudo[k])) for k in worst],
            per_prompt=pseudo,
            spread=pseudo,
            against=pseudo < bound,
            test=f"top-{self.top_k} match on these prompts; percentile bootstrap of Spearman's rho over "
            + ("clusters" if groups is not None else "prompts"),
            notes=notes,
            agreement=self._record(rho),
        )

    def _record(self, rho: float) -> dict[str, Any]:
        """The claim record's ``agreement`` field: each checked unit's mean estimate and exact change."""
        points = [
            {
                "unit": str(row[self.unit]),
                "attribution": float(row["attribution"]),
                "exact": float(row["exact"]),
                "top": row["role"] == "top",
            }
            for row in self.frame().to_dict("records")
        ]
        return {"unit": self.unit, "method": self.estimator.method, "rank_correlation": rho, "points": points}


def checked_names(ranked: list[str], top_k: int, sample: int | None, seed: int, unit: str = "cell") -> list[str]:
    """The units a check patches: the ``top_k`` first of ``ranked`` and ``sample`` of the rest drawn at
    random (``seed``), or all of the rest when ``sample`` is None."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k < len(ranked):
        raise MitestError(f"top_k must be an int from 1 to {len(ranked) - 1} (the {unit}s minus one), got {top_k!r}")
    rest = ranked[top_k:]
    if sample is not None:
        if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
            raise MitestError(f"sample must be a positive int (or None for every other {unit}), got {sample!r}")
        picked = np.random.default_rng(seed).choice(len(rest), size=min(sample, len(rest)), replace=False)
        rest = [rest[i] for i in sorted(picked)]
    return ranked[:top_k] + rest


def _misranked(agreement: RankAgreement, by_attribution: list[str], by_exact: list[str]) -> list[str]:
    """Notes naming the units on which the two top sets differ."""
    frame = agreement.frame().set_index(agreement.unit)
    notes = []
    for name in by_attribution:
        if name not in by_exact:
            row = frame.loc[name]
            notes.append(
                f"{name}: top {agreement.top_k} by attribution ({row.attribution:.4g}) but ranks "
                f"#{row.rank_exact} by exact patching ({row.exact:.4g})"
            )
    for name in by_exact:
        if name not in by_attribution:
            row = frame.loc[name]
            notes.append(
                f"{name}: top {agreement.top_k} by exact patching ({row.exact:.4g}) but ranks "
                f"#{row.rank_attribution} of the checked {agreement.unit}s by attribution ({row.attribution:.4g})"
            )
    return notes


def _bootstrap(
    attributed: np.ndarray, exact: np.ndarray, groups: np.ndarray | None, resamples: int, seed: int
) -> np.ndarray:
    """Spearman's rho of the cells' mean effects on ``resamples`` resamples of prompts (or clusters)."""
    if groups is None:
        codes, count = np.arange(attributed.shape[1]), attributed.shape[1]
    else:
        codes, count = stats.cluster_codes(groups)
    sums_a = np.stack([np.bincount(codes, weights=row, minlength=count) for row in attributed], 1)
    sums_e = np.stack([np.bincount(codes, weights=row, minlength=count) for row in exact], 1)
    sizes = np.bincount(codes, minlength=count).astype(np.float64)
    rng = np.random.default_rng(seed)
    found = []
    for start in range(0, resamples, 2000):
        draws = rng.integers(0, count, size=(min(2000, resamples - start), count))
        weights = np.zeros(draws.shape)
        np.add.at(weights, (np.arange(len(draws))[:, None], draws), 1.0)
        units = weights @ sizes
        found.append(_spearman_rows((weights @ sums_a) / units[:, None], (weights @ sums_e) / units[:, None]))
    return np.concatenate(found)


def _pseudo_values(attributed: np.ndarray, exact: np.ndarray, rho: float) -> np.ndarray:
    """Jackknife pseudo-values of rho, one per prompt (their mean is about rho, their spread its error)."""
    n = attributed.shape[1]
    if n < 2:
        return np.full(n, rho)
    leave_a = (attributed.sum(1)[None, :] - attributed.T) / (n - 1)
    leave_e = (exact.sum(1)[None, :] - exact.T) / (n - 1)
    pseudo = n * rho - (n - 1) * _spearman_rows(leave_a, leave_e)
    return np.where(np.isfinite(pseudo), pseudo, rho)


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row of ``a`` with the same row of ``b`` (NaN where a row is constant)."""
    ra = scipy_stats.rankdata(a, axis=1)
    rb = scipy_stats.rankdata(b, axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    scale = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, (ra * rb).sum(1) / np.where(scale > 0, scale, 1.0), np.nan)
