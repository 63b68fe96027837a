"""``mt.attribute``: gradient estimates of every cell's patching effect, checked against exact patching.

An attribution estimates, per cell and prompt, what ``mt.sweep`` of the same template would measure
(:mod:`mitest.engine.attributing` computes it): its cells are exactly the sweep's. It is fast and
approximate, so :meth:`Attribution.verify` runs the exact patching of its top cells and a seeded
sample of the rest, and :meth:`Attribution.expect_agrees_with_patching` turns that check into a claim.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mitest.claims.effect import Effect
from mitest.claims.verdict import Verdict
from mitest.engine.attributing import attribution_scores
from mitest.engine.effects import claim_identity
from mitest.engine.measure import checked_inputs
from mitest.engine.runner import Engine
from mitest.errors import InterventionError, MitestError, SiteError
from mitest.model.model import Model
from mitest.spec.interventions import Intervention, PathPatch
from mitest.spec.metrics import Metric, as_metric
from mitest.spec.prompts import Prompts
from mitest.sweeps.agreement import RankAgreement, checked_names
from mitest.sweeps.cells import Cell, expand, position_of, swept_sites, with_site
from mitest.sweeps.sweep import Sweep, cell_frame, sweep

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
        return cell_frame(self.cells, list(self.scores), self.prompts.groups, level)

    def ranking(self) -> list[str]:
        """Cell names by the size of their mean estimate, largest first (ties in sweep order)."""
        size = np.abs(self.scores.mean(1))
        return [self.names[i] for i in np.argsort(-size, kind="stable")]

    def verify(self, top_k: int = 5, *, sample: int | None = None, seed: int = 0) -> Agreement:
        """Patch exactly (one ``mt.sweep``) the ``top_k`` cells of :meth:`ranking` and ``sample`` cells drawn
        at random (``seed``) from the rest (default: all of the rest), and compare."""
        checked = checked_names(self.ranking(), top_k, sample, seed)
        exact = sweep(
            self.model,
            self.prompts,
            self.template,
            self.metric,
            positions=self.positions,
            batch_size=self.batch_size,
            only=checked,
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
        return position_of(name, self.names, "the attribution has no cell")


@dataclass(frozen=True, eq=False)
class Agreement(RankAgreement):
    """An attribution next to the exact patching of some of its cells (``exact``, a :class:`Sweep`);
    :class:`~mitest.sweeps.agreement.RankAgreement` gives ``rank_correlation``, ``top``, ``frame`` and
    ``expect_agrees``."""

    attribution: Attribution
    top_k: int
    exact: Sweep

    @property
    def estimator(self) -> Attribution:
        return self.attribution

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
    def effects(self) -> list[Effect]:
        return list(self.exact.effects)

    @property
    def intervention(self) -> dict[str, Any]:
        return self.attribution.template.to_dict()


def exact_change(effect: Effect, template: Intervention) -> np.ndarray:
    """What an attribution estimates, measured: the metric's change from the run ``template`` edits."""
    if template.runs_on == "corrupted":
        assert effect.corrupted is not None, "a denoising patch runs on the corrupted twins, which were measured"
        return effect.intervened - effect.corrupted
    return effect.delta
