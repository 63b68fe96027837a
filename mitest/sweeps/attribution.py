"""``mt.attribute``: gradient estimates of every cell's patching effect, checked against exact patching.

An attribution estimates, per cell and prompt, what ``mt.sweep`` of the same template would measure
(:mod:`mitest.engine.attributing` computes it): its cells are exactly the sweep's. It is fast and
approximate, so :meth:`Attribution.verify` runs the exact patching of its top cells and a seeded
sample of the rest, and :meth:`Attribution.expect_agrees_with_patching` turns that check into a claim.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from mitest.claims import stats
from mitest.claims.decide import decide
from mitest.claims.effect import Effect
from mitest.claims.verdict import Verdict
from mitest.config import claim_alpha, settings
from mitest.engine.attributing import attribution_scores
from mitest.engine.effects import claim_identity
from mitest.engine.measure import checked_inputs
from mitest.engine.runner import Engine
from mitest.errors import InterventionError, MitestError, SiteError, closest
from mitest.model.model import Model
from mitest.spec.interventions import Intervention, PathPatch
from mitest.spec.metrics import Metric, as_metric
from mitest.spec.prompts import Prompts
from mitest.sweeps.cells import Cell, expand, swept_sites, with_site
from mitest.sweeps.sweep import Sweep, sweep, t_interval

DEFAULT_STEPS = 16  # integrated-gradient points when ``steps`` is not given


def attribute(
    model: Model | Any,
    prompts: Prompts,
    intervention: Intervention,
    metric: object,
    *,
    method: str = "atp",
    steps: int | None = None,
    positions: str | None = None,
    batch_size: int = 32,
) -> Attribution:
    """Estimate, for every cell of ``intervention``'s sites, the change of ``metric`` that
    ``mt.sweep(model, prompts, intervention, metric, positions=positions)`` would measure.

    Estimates are changes from the run the template edits: the clean run, or for a denoising patch
    (``source="clean"``) the corrupted one. ``method="atp"`` (attribution patching): each cell's change
    of activation times the metric's gradient at that run, one forward and backward pass for all
    cells. ``method="ig"``: the gradient averaged over ``steps`` points (default 16) of the straight
    line to the intervened activations, the cells of one hook point moved together; more passes, and
    exact for the joint change of each hook point's cells
    in the limit. The template is an ``mt.patch`` (any source) or an ``mt.ablate``.
    """
    model = checked_inputs(model, prompts, batch_size)
    metric = as_metric(metric)
    if isinstance(intervention, PathPatch):
        raise InterventionError(
            "mt.attribute estimates patches and ablations of the cells themselves; a path patch's effect runs "
            "through a frozen pass it cannot differentiate. Measure it exactly with mt.sweep"
        )
    if not swept_sites(intervention):
        raise SiteError("the attribution has no cells; give the intervention at least one site, e.g. mt.heads('*')")
    steps = _steps(method, steps)
    cells = expand(intervention, model, prompts, positions)
    interventions = [with_site(intervention, cell.site) for cell in cells]
    eager = any(model.resolve(cell.site.name).kind == "pattern" for cell in cells)
    engine = Engine(model, batch_size, eager=eager)
    scores = attribution_scores(engine, prompts, interventions, metric, method=method, steps=steps)
    identity = claim_identity(model.revision_at(engine.version), prompts, intervention.to_dict(), metric)
    return Attribution(
        intervention, tuple(cells), scores, method, steps, positions, metric, model, prompts, batch_size, identity
    )


def _steps(method: str, steps: int | None) -> int:
    if method == "atp":
        if steps not in (None, 1):
            raise MitestError(
                f"method='atp' takes the gradient at the clean run only; drop steps={steps!r} or use method='ig'"
            )
        return 1
    if method != "ig":
        raise MitestError(f"method must be 'atp' or 'ig', got {method!r}")
    steps = DEFAULT_STEPS if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise MitestError(f"steps must be a positive int, got {steps!r}")
    return steps


@dataclass(frozen=True, eq=False)
class Attribution:
    """Per-cell, per-prompt attribution estimates. ``attribution["1.4"]`` is a cell's per-prompt values."""

    template: Intervention
    cells: tuple[Cell, ...]
    scores: np.ndarray  # [cells, prompts]
    method: str
    steps: int
    positions: str | None
    metric: Metric
    model: Model
    prompts: Prompts
    batch_size: int
    identity: dict[str, Any]

    def __len__(self) -> int:
        return len(self.cells)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.scores[self._index(name)]

    @property
    def names(self) -> list[str]:
        """The cell names, in sweep order."""
        return [cell.name for cell in self.cells]

    def frame(self, level: float = 0.95) -> pd.DataFrame:
        """One row per cell: coordinates, mean estimate and its t interval at ``level`` (as ``Sweep.frame``)."""
        rows = []
        for cell, values in zip(self.cells, self.scores, strict=True):
            low, high = t_interval(values, self.prompts.groups, level)
            rows.append(
                {
                    "cell": cell.name,
                    "site": str(cell.site),
                    "layer": cell.layer,
                    "head": cell.head,
                    "neuron": cell.neuron,
                    "position": cell.position,
                    "estimate": float(values.mean()),
                    "low": low,
                    "high": high,
                    "n": len(values),
                }
            )
        frame = pd.DataFrame(rows).dropna(axis="columns", how="all")
        for column in {"layer", "head", "neuron", "position"} & set(frame.columns):
            frame[column] = frame[column].astype("Int64")
        return frame

    def ranking(self) -> list[str]:
        """Cell names by the size of their mean estimate, largest first (ties in sweep order)."""
        size = np.abs(self.scores.mean(1))
        return [self.names[i] for i in np.argsort(-size, kind="stable")]

    def verify(self, top_k: int = 5, *, sample: int | None = None, seed: int = 0) -> Agreement:
        """Patch exactly (one ``mt.sweep``) the ``top_k`` cells of :meth:`ranking` and ``sample`` cells drawn
        at random (``seed``) from the rest (default: all of the rest), and compare."""
        ranked = self.ranking()
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k < len(ranked):
            raise MitestError(f"top_k must be an int from 1 to {len(ranked) - 1} (the cells minus one), got {top_k!r}")
        rest = ranked[top_k:]
        if sample is not None:
            if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
                raise MitestError(f"sample must be a positive int (or None for every other cell), got {sample!r}")
            picked = np.random.default_rng(seed).choice(len(rest), size=min(sample, len(rest)), replace=False)
            rest = [rest[i] for i in sorted(picked)]
        exact = sweep(
            self.model,
            self.prompts,
            self.template,
            self.metric,
            positions=self.positions,
            batch_size=self.batch_size,
            only=ranked[:top_k] + rest,
        )
        return Agreement(self, top_k, exact)

    def expect_agrees_with_patching(
        self,
        top_k: int = 5,
        *,
        rank_correlation_at_least: float = 0.9,
        sample: int | None = None,
        seed: int = 0,
        alpha: float | None = None,
    ) -> Verdict:
        """Claim: the attribution's top ``top_k`` cells are exact patching's top ``top_k`` (among the
        checked cells), and Spearman's rank correlation of their mean effects is at least the bound
        (see :meth:`Agreement.expect_agrees`)."""
        __tracebackhide__ = True
        agreement = self.verify(top_k, sample=sample, seed=seed)
        return agreement.expect_agrees(rank_correlation_at_least=rank_correlation_at_least, alpha=alpha)

    def _index(self, name: str) -> int:
        names = self.names
        if name in names:
            return names.index(name)
        near = closest(str(name), names)
        hint = f"; closest: {', '.join(near)}" if near else ""
        raise SiteError(f"the attribution has no cell {name!r}{hint}. Cells are named like {names[0]!r}")


@dataclass(frozen=True, eq=False)
class Agreement:
    """An attribution next to the exact patching of some of its cells (``exact``, a :class:`Sweep`)."""

    attribution: Attribution
    top_k: int
    exact: Sweep

    @property
    def names(self) -> list[str]:
        """The checked cells, in sweep order."""
        return self.exact.names

    @property
    def estimates(self) -> np.ndarray:
        """``[checked cells, prompts]`` attribution estimates."""
        return np.stack([self.attribution[name] for name in self.names])

    @property
    def changes(self) -> np.ndarray:
        """``[checked cells, prompts]`` exact changes of the metric from the run the template edits: the
        sweep's deltas, or for a denoising patch (``source="clean"``) intervened minus corrupted values."""
        return np.stack([exact_change(effect, self.attribution.template) for effect in self.exact.effects])

    @property
    def rank_correlation(self) -> float:
        """Spearman's rho between the checked cells' mean attribution and mean exact change."""
        return float(scipy_stats.spearmanr(self.estimates.mean(1), self.changes.mean(1)).statistic)

    def top(self) -> tuple[list[str], list[str]]:
        """The top ``top_k`` cells by attribution and by exact patching (among the checked cells)."""
        by_attribution = self.attribution.ranking()[: self.top_k]
        order = np.argsort(-np.abs(self.changes.mean(1)), kind="stable")
        return by_attribution, [self.names[i] for i in order[: self.top_k]]

    def frame(self) -> pd.DataFrame:
        """One row per checked cell: its role (top by attribution, or sampled), both means and their ranks."""
        estimate, exact = self.estimates.mean(1), self.changes.mean(1)
        by_attribution, _ = self.top()
        frame = pd.DataFrame(
            {
                "cell": self.names,
                "role": ["top" if name in by_attribution else "sample" for name in self.names],
                "attribution": estimate,
                "exact": exact,
                "difference": estimate - exact,
            }
        )
        frame["rank_attribution"] = (-np.abs(estimate)).argsort(kind="stable").argsort(kind="stable") + 1
        frame["rank_exact"] = (-np.abs(exact)).argsort(kind="stable").argsort(kind="stable") + 1
        return frame

    def expect_agrees(self, *, rank_correlation_at_least: float, alpha: float | None = None) -> Verdict:
        """Claim: the top ``top_k`` by attribution are the top ``top_k`` by exact patching (on these
        prompts), and Spearman's rho of the checked cells' means is at least ``rank_correlation_at_least``.

        REFUTED, naming the cells, when the top sets differ; otherwise decided on a bootstrap of rho over
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
                "Spearman's rho is undefined: the checked cells' mean attributions or exact effects are all equal; "
                "check more cells (a larger top_k or sample)"
            )
        groups = self.attribution.prompts.groups
        boot = _bootstrap(attributed, exact, groups, stats.resamples_for(a), settings.seed)
        low, high = (float(v) for v in np.nanquantile(boot, [a, 1 - a])) if np.isfinite(boot).any() else (rho, rho)
        p_holds = float(1 + np.sum(~(boot > bound))) / (len(boot) + 1)  # a NaN resample counts against both
        p_refuted = float(1 + np.sum(~(boot < bound))) / (len(boot) + 1)
        by_attribution, by_exact = self.top()
        notes = _misranked(self, by_attribution, by_exact)
        if notes:  # the top sets differ on these prompts: refuted, whatever rho says
            p_holds, p_refuted = 1.0, 0.0
        pseudo = _pseudo_values(attributed, exact, rho)
        worst = np.argsort(pseudo, kind="stable")[:3]
        effect = replace(
            self.exact.effects[self.names.index(by_exact[0])],
            identity=self.attribution.identity,
            intervention=self.attribution.template.to_dict(),
        )
        method = self.attribution.method + (
            f" ({self.attribution.steps} steps)" if self.attribution.method == "ig" else ""
        )
        return decide(
            effect,
            claim=(
                f"{method} attribution agrees with exact patching: its top {self.top_k} of "
                f"{len(self.attribution)} cells are patching's, and Spearman's rho over {len(self.names)} "
                f"checked cells is at least {bound:g}"
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
        )


def exact_change(effect: Effect, template: Intervention) -> np.ndarray:
    """What an attribution estimates, measured: the metric's change from the run ``template`` edits."""
    if template.runs_on == "corrupted":
        assert effect.corrupted is not None, "a denoising patch runs on the corrupted twins, which were measured"
        return effect.intervened - effect.corrupted
    return effect.delta


def _misranked(agreement: Agreement, by_attribution: list[str], by_exact: list[str]) -> list[str]:
    """Notes naming the cells on which the two top sets differ."""
    frame = agreement.frame().set_index("cell")
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
                f"#{row.rank_attribution} of the checked cells by attribution ({row.attribution:.4g})"
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
