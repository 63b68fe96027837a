"""Faithfulness curves: how much of a behaviour the top of a ranking of components recovers.

``mt.faithfulness_curve(model, prompts, ranking, metric)`` keeps the top ``k = ceil(p * N)``
components of a ranking for each fraction ``p`` of the N components of the universe, knocks out
every other component exactly (one forward pass per distinct k, through :class:`CircuitTest`), and
reports the faithfulness of each top-k circuit, as the MIB circuit-localization track does.

Each point is exactly ``mt.circuit``'s faithfulness of its top-k circuit (the same ratio of means,
the same bootstrap interval over prompts or clusters) and its claim is the circuit faithfulness
claim (:func:`~mitest.claims.effect.decide_recovery`). The area under the curve is the trapezoid
over the fractions on a linear axis, divided by the fractions' span: the curve's mean height, 1 for
a curve at 1. Every point shares the denominator ``sum(full - empty)``, so the area is itself a
ratio of sums over prompts, ``sum_i sum_j w_j (alone_ij - empty_i) / sum_i (full_i - empty_i)``:
its interval is the bootstrap of the whole curve, every resample of prompts (or clusters) applied
to every point at once, and its claim is again a recovery claim.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from mitest.circuits.circuit import CircuitTest, circuit, every_component, label, single
from mitest.claims import stats
from mitest.claims.decide import claim_interval
from mitest.claims.effect import Effect, decide_recovery
from mitest.claims.verdict import Verdict
from mitest.config import claim_alpha
from mitest.errors import CurveError, SiteError, closest
from mitest.model.model import Model
from mitest.spec.base import identity
from mitest.spec.prompts import Prompts
from mitest.spec.sites import Site

FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)  # MIB's circuit sizes


def faithfulness_curve(
    model: Model | nn.Module,
    prompts: Prompts,
    ranking: Any,
    metric: object,
    *,
    components: Any = None,
    fractions: Sequence[float] = FRACTIONS,
    ablation: str = "mean",
    seed: int | None = None,
    batch_size: int = 32,
) -> FaithfulnessCurve:
    """The faithfulness of the top ``ceil(p * N)`` components of ``ranking`` at each fraction ``p``.

    Args:
        model, prompts, metric, ablation, seed, batch_size: as for :func:`mitest.circuit`.
        ranking: the components, best first: names (``"1.0"`` for a head, ``"mlp 1"``, or a site name
            such as ``"blocks.1.hook_mlp_out"``) or sites (``mt.head(1, 0)``, ``mt.mlp(1)``); a pandas
            Series or mapping of name to score, ranked by ``|score|`` descending (ties keep their
            order); or any object with a ``.ranking()`` method returning such a list. It may leave
            out components the fractions below 1 never reach.
        components: the universe of N components (default: every attention head), as sites.
        fractions: strictly increasing, in (0, 1], at least two. Fractions that give the same k
            share one measurement; ``p = 1`` is the full model (faithfulness exactly 1).

    Raises:
        CurveError: an empty ranking, a component ranked twice, bad fractions, or a ranking too short
            for the fractions.
        SiteError: a ranked name that is no component of the model, or not one of ``components``.
    """
    model = model if isinstance(model, Model) else Model.from_hf(model)
    everything = every_component(model) if components is None or model.dims is not None else []
    universe = single([site for site in everything if site.index is not None] if components is None else components)
    ranked = _ranked(ranking, universe, everything)
    fractions = _checked_fractions(fractions)
    n = len(universe)
    sizes = [max(1, math.ceil(round(p * n, 9))) for p in fractions]  # round: 0.07 * 100 is 7, not 7.000000000000001
    reached = max((k for k in sizes if k < n), default=1)
    if reached > len(ranked):
        p = fractions[sizes.index(reached)]
        raise CurveError(
            f"fraction {p:g} keeps the top {reached} of {n} components, but the ranking holds only {len(ranked)}; "
            f"rank more components or use fractions up to {len(ranked) / n:.4g}"
        )
    base = circuit(
        model,
        prompts,
        ranked[: min(min(sizes), n - 1)],
        metric,
        components=universe,
        ablation=ablation,
        seed=seed,
        batch_size=batch_size,
    )
    alone = {k: base.full if k == n else base.with_circuit(ranked[:k]).alone for k in sorted(set(sizes))}
    return FaithfulnessCurve(base, tuple(ranked[: min(len(ranked), max(sizes))]), fractions, tuple(sizes), alone)


@dataclass(frozen=True)
class Area:
    """The area under a faithfulness curve (its mean height) with a bootstrap interval at ``level``."""

    estimate: float
    low: float
    high: float
    level: float


class FaithfulnessCurve:
    """Faithfulness of the top-k circuits of a ranking, one point per fraction; made by :func:`faithfulness_curve`.

    Attributes:
        fractions: the fractions p, increasing; ``sizes`` the k of each.
        ranking: the ranked components the curve's circuits are drawn from, best first.
        components: the universe of N components.
    """

    def __init__(
        self,
        base: CircuitTest,
        ranking: tuple[Site, ...],
        fractions: tuple[float, ...],
        sizes: tuple[int, ...],
        alone: dict[int, np.ndarray],
    ) -> None:
        self._base, self.ranking, self.fractions, self.sizes = base, ranking, fractions, sizes
        self.components = base.components
        self._alone = alone
        x = np.asarray(fractions)
        steps = np.diff(x) / 2
        self._weights = (np.r_[steps, 0.0] + np.r_[0.0, steps]) / (x[-1] - x[0])  # trapezoid, mean height
        self._spec = {  # no ranking: like a direction, it is usually derived from the model under test
            "type": "FaithfulnessCurve",
            "components": [site.to_dict() for site in self.components],
            "fractions": list(fractions),
            "ablation": base.ablation,
            "seed": base.seed,
        }

    @property
    def n(self) -> int:
        """Number of prompts."""
        return self._base.n

    def frame(self, alpha: float | None = None) -> pd.DataFrame:
        """One row per fraction: ``fraction``, ``k``, ``components`` (labels), ``estimate``, ``low``, ``high``, ``n``.

        The interval has the claims' level ``1 - 2 * alpha`` (default alpha: ``mt.settings``'s, per claim).
        """
        a = claim_alpha(alpha)
        rows = []
        for p, k in zip(self.fractions, self.sizes, strict=True):
            effect = self._point(k)
            interval = self._interval(effect, a)
            rows.append(
                {
                    "fraction": p,
                    "k": k,
                    "components": tuple(label(site) for site in self._kept(k)),
                    "estimate": _recovered(effect),
                    "low": interval.low,
                    "high": interval.high,
                    "n": effect.n,
                }
            )
        return pd.DataFrame(rows)

    @property
    def auc(self) -> Area:
        """The area under the curve (linear fraction axis, divided by the fractions' span) and its interval."""
        return self._auc(claim_alpha(None))

    # -- claims ------------------------------------------------------------------------------------

    def expect_recovers(
        self, at_fraction: float = 0.05, at_least: float = 0.8, *, alpha: float | None = None
    ) -> Verdict:
        """Claim: the top ``at_fraction`` of the ranking recover at least ``at_least`` of the full-empty gap.

        The circuit faithfulness claim (``mt.circuit(...).effect.expect_recovery``) on that point's circuit.
        """
        __tracebackhide__ = True
        matches = [i for i, p in enumerate(self.fractions) if math.isclose(p, at_fraction, rel_tol=1e-9)]
        if not matches:
            raise CurveError(
                f"the curve has no point at fraction {at_fraction:g}; its fractions are "
                f"{', '.join(f'{p:g}' for p in self.fractions)} (pass fractions= to add one)"
            )
        p, k = self.fractions[matches[0]], self.sizes[matches[0]]
        effect = self._claim_effect(self._point(k), f"the circuit: {_listed(self._kept(k))}", "recovers", at_fraction=p)
        claim = (
            f"the top {at_fraction:g} of the ranking ({k} of {len(self.components)} components) recover at least "
            f"{at_least:g} of the full-empty gap (faithfulness curve)"
        )
        return decide_recovery(effect, at_least, alpha=alpha, claim=claim, curve=self._record(alpha, at_fraction=p))

    def expect_auc(self, at_least: float, *, alpha: float | None = None) -> Verdict:
        """Claim: the area under the curve (its mean height over the fractions) is at least ``at_least``."""
        __tracebackhide__ = True
        effect = self._claim_effect(self._area(), f"the ranking: {_listed(self.ranking)}", "auc")
        claim = (
            f"the faithfulness curve's area over fractions {self.fractions[0]:g} to {self.fractions[-1]:g} "
            f"(its mean height) is at least {at_least:g}"
        )
        return decide_recovery(effect, at_least, alpha=alpha, claim=claim, curve=self._record(alpha))

    # -- machinery ---------------------------------------------------------------------------------

    def _record(self, alpha: float | None, at_fraction: float | None = None) -> dict[str, Any]:
        """The curve as a claim record's ``curve`` field: its points and area, intervals at the claim's level."""
        area = self._auc(claim_alpha(alpha))
        return {
            "points": [
                {"fraction": p, "k": int(k), **{key: float(row[key]) for key in ("estimate", "low", "high")}}
                for p, k, (_, row) in zip(self.fractions, self.sizes, self.frame(alpha).iterrows(), strict=True)
            ],
            "auc": {"estimate": area.estimate, "low": area.low, "high": area.high},
            "at_fraction": at_fraction,
        }

    def _auc(self, alpha: float) -> Area:
        effect = self._area()
        interval = self._interval(effect, alpha)
        return Area(_recovered(effect), interval.low, interval.high, interval.level)

    def _point(self, k: int) -> Effect:
        """The Effect of the top-k circuit: clean full, intervened alone, base empty."""
        return replace(self._base.effect, intervened=self._alone[k])

    def _area(self) -> Effect:
        """An Effect whose recovery is the area: intervened is the weighted mean of the points' values."""
        values = sum(w * self._alone[k] for w, k in zip(self._weights, self.sizes, strict=True))
        return replace(self._base.effect, intervened=np.asarray(values))

    def _interval(self, effect: Effect, alpha: float) -> stats.ConfidenceInterval:
        assert effect.corrupted is not None  # every point has the empty run as its base
        return claim_interval(effect, effect.intervened - effect.corrupted, effect.clean - effect.corrupted, alpha)

    def _kept(self, k: int) -> tuple[Site, ...]:
        """The top-k circuit, best first; at k = N the unranked components follow in the universe's order."""
        if k < len(self.components):
            return self.ranking[:k]
        return self.ranking + tuple(site for site in self.components if site not in self.ranking)

    def _claim_effect(self, effect: Effect, note: str, claim: str, **parameters: float) -> Effect:
        """``effect`` as a curve claim's: the curve as its intervention and identity (with the circuit Effect's
        model, prompts and metric), and ``note`` saying which components it was decided on."""
        spec = {**self._spec, "claim": claim, **parameters}
        found = identity(spec)
        return replace(
            effect,
            intervention=spec,
            identity={
                **(self._base.effect.identity or {}),
                "intervention": f"curve-{claim}:{found.key}",
                "parameters": {f"curve.{path}": value for path, value in found.parameters.items()},
                "derived": found.derived,
                "structure": {"intervention": found.structure},
            },
            notes=(*effect.notes, note),
        )

    def __repr__(self) -> str:
        points = ", ".join(f"{p:g}: {value:.3g}" for p, value in zip(self.fractions, self._estimates(), strict=True))
        return f"FaithfulnessCurve({len(self.components)} components, n={self.n}, {{{points}}})"

    def _estimates(self) -> list[float]:
        return [_recovered(self._point(k)) for k in self.sizes]


def _listed(sites: Sequence[Site], shown: int = 12) -> str:
    names = ", ".join(label(site) for site in sites[:shown])
    return names + (f", ... ({len(sites)} in all)" if len(sites) > shown else "")


def _recovered(effect: Effect) -> float:
    """``sum(intervened - base) / sum(clean - base)``: the faithfulness ratio of means."""
    assert effect.corrupted is not None
    return float((effect.intervened - effect.corrupted).sum() / (effect.clean - effect.corrupted).sum())


def _ranked(ranking: Any, universe: Sequence[Site], everything: Sequence[Site]) -> list[Site]:
    """The ranking as components of ``universe``, best first; refuses empty, repeated or unknown entries."""
    if callable(getattr(ranking, "ranking", None)):
        ranking = ranking.ranking()
    if isinstance(ranking, Mapping):
        ranking = pd.Series(ranking, dtype=object)
    if isinstance(ranking, pd.Series):
        scores = pd.to_numeric(ranking, errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(scores).all():
            bad = ranking.index[int(np.flatnonzero(~np.isfinite(scores))[0])]
            raise CurveError(f"the score of {bad!r} is {ranking[bad]!r}; every score must be a finite number")
        ranking = list(ranking.index[np.argsort(-np.abs(scores), kind="stable")])
    if isinstance(ranking, (str, Site)):
        ranking = [ranking]
    entries = list(ranking) if isinstance(ranking, (Sequence, pd.Index)) else None
    if entries is None:
        raise CurveError(
            f"cannot read a ranking from {type(ranking).__name__}; pass component names best first, a Series of "
            "scores, or an object with a .ranking() method"
        )
    if not entries:
        raise CurveError("the ranking is empty; pass the components best first, e.g. ['0.0', '1.0', '1.1']")
    names = {key: site for site in [*everything, *universe] for key in (label(site), str(site))}
    ranked: list[Site] = []
    for entry in entries:
        for site in _sites(entry, names):
            if site not in universe:
                where = (
                    "is a component of the model but not"
                    if site in everything
                    else "is not a component of the model nor"
                )
                raise SiteError(
                    f"ranked {label(site)} {where} one of the {len(universe)} components the curve is drawn from; "
                    "drop it from the ranking or pass components= holding it"
                )
            if site in ranked:
                raise CurveError(f"{label(site)} is ranked twice; rank each component once")
            ranked.append(site)
    return ranked


def _sites(entry: Any, names: dict[str, Site]) -> list[Site]:
    """One ranked entry as single components: a name in ``names`` (labels and site names), or sites."""
    if isinstance(entry, str):
        if entry in names:
            return [names[entry]]
        near = closest(entry, list(names)) or list(names)[:5]
        raise SiteError(f"{entry!r} is not a component of the model; components are named like {', '.join(near)}")
    return single(entry)


def _checked_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(p) for p in fractions)
    if len(values) < 2:
        raise CurveError(f"a curve needs at least two fractions, got {list(values)}; e.g. fractions=(0.1, 0.5, 1.0)")
    bad = [p for p in values if not 0 < p <= 1]  # NaN fails too
    if bad:
        raise CurveError(f"fractions must lie in (0, 1], got {bad[0]:g}; a fraction of the components is kept")
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise CurveError(f"fractions must be strictly increasing, got {list(values)}; sort them and drop repeats")
    return values
