"""mitest: falsifiable, statistically tested claims about neural network internals.

Quick tour::

    import mitest
    model = mt.Model.load("path/to/model")
    prompts = mt.Prompts(tokens, answers=answers, wrong=wrong)
    effect = mt.measure(model, prompts, mt.ablate(mt.heads("1.4", "1.6"), method="mean"),
                        metric=mt.metrics.logit_diff)
    effect.expect_decrease(at_least=0.5)

Names load on first use, so ``import mitest`` (and the pytest plugin) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # static view of the lazy names below; nothing is imported at run time
    from mitest import zoo
    from mitest.circuits.circuit import CircuitTest, circuit
    from mitest.circuits.curve import FaithfulnessCurve, faithfulness_curve
    from mitest.claims import stats
    from mitest.claims.effect import Effect, expect_monotonic
    from mitest.claims.verdict import HOLDS, INCONCLUSIVE, REFUTED, Verdict
    from mitest.config import settings
    from mitest.engine.directions import mean_difference
    from mitest.engine.measure import activations, measure
    from mitest.errors import (
        BaselineError,
        BaselineRegression,
        CandidateError,
        ClaimFailure,
        ClaimInconclusive,
        ClaimRefuted,
        CurveError,
        DoubleBosWarning,
        HookNotFiredError,
        HypothesisError,
        InconclusiveWarning,
        InterventionError,
        MetricError,
        MitestError,
        MitestWarning,
        ModelError,
        ModelLoadError,
        NestedRunError,
        NoOpInterventionWarning,
        PositionsError,
        PromptsError,
        ReportError,
        ResampleWarning,
        SettingsError,
        SiteError,
        StatsError,
        WriteError,
        ZooError,
    )
    from mitest.families import strategies
    from mitest.families.properties import expect_for_all
    from mitest.features.attention import Attention, Relative, attention, relative
    from mitest.features.heads import HeadScores, head_scores
    from mitest.features.neurons import expect_selective
    from mitest.model.model import Model
    from mitest.spec import metrics
    from mitest.spec.hypothesis import Hypothesis
    from mitest.spec.interventions import (
        Ablate,
        Combined,
        Intervention,
        Patch,
        PathPatch,
        Scrub,
        Steer,
        ablate,
        combine,
        patch,
        path_patch,
        scrub,
        steer,
    )
    from mitest.spec.positions import Positions, as_positions
    from mitest.spec.prompts import Prompts
    from mitest.spec.sites import (
        Site,
        Sites,
        attn,
        direction,
        head,
        heads,
        mlp,
        neurons,
        resid,
        site,
    )
    from mitest.sweeps.attribution import Agreement, Attribution, attribute
    from mitest.sweeps.edge_attribution import EdgeAgreement, EdgeAttribution, attribute_edges
    from mitest.sweeps.sweep import Sweep, sweep

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "metrics": "mitest.spec.metrics",
    "stats": "mitest.claims.stats",
    "strategies": "mitest.families.strategies",
    "zoo": "mitest.zoo",
    "Effect": "mitest.claims.effect",
    "expect_monotonic": "mitest.claims.effect",
    "expect_for_all": "mitest.families.properties",
    "attention": "mitest.features.attention",
    "Attention": "mitest.features.attention",
    "relative": "mitest.features.attention",
    "Relative": "mitest.features.attention",
    "head_scores": "mitest.features.heads",
    "HeadScores": "mitest.features.heads",
    "expect_selective": "mitest.features.neurons",
    "circuit": "mitest.circuits.circuit",
    "CircuitTest": "mitest.circuits.circuit",
    "faithfulness_curve": "mitest.circuits.curve",
    "FaithfulnessCurve": "mitest.circuits.curve",
    "sweep": "mitest.sweeps.sweep",
    "Sweep": "mitest.sweeps.sweep",
    "attribute": "mitest.sweeps.attribution",
    "Attribution": "mitest.sweeps.attribution",
    "Agreement": "mitest.sweeps.attribution",
    "attribute_edges": "mitest.sweeps.edge_attribution",
    "EdgeAttribution": "mitest.sweeps.edge_attribution",
    "EdgeAgreement": "mitest.sweeps.edge_attribution",
    "BaselineError": "mitest.errors",
    "BaselineRegression": "mitest.errors",
    "CandidateError": "mitest.errors",
    "ClaimFailure": "mitest.errors",
    "ClaimInconclusive": "mitest.errors",
    "ClaimRefuted": "mitest.errors",
    "CurveError": "mitest.errors",
    "DoubleBosWarning": "mitest.errors",
    "HookNotFiredError": "mitest.errors",
    "NestedRunError": "mitest.errors",
    "HypothesisError": "mitest.errors",
    "InconclusiveWarning": "mitest.errors",
    "InterventionError": "mitest.errors",
    "MetricError": "mitest.errors",
    "MitestError": "mitest.errors",
    "MitestWarning": "mitest.errors",
    "ModelError": "mitest.errors",
    "ModelLoadError": "mitest.errors",
    "NoOpInterventionWarning": "mitest.errors",
    "PositionsError": "mitest.errors",
    "PromptsError": "mitest.errors",
    "ReportError": "mitest.errors",
    "ResampleWarning": "mitest.errors",
    "SettingsError": "mitest.errors",
    "SiteError": "mitest.errors",
    "StatsError": "mitest.errors",
    "WriteError": "mitest.errors",
    "ZooError": "mitest.errors",
    "Ablate": "mitest.spec.interventions",
    "Combined": "mitest.spec.interventions",
    "Intervention": "mitest.spec.interventions",
    "Hypothesis": "mitest.spec.hypothesis",
    "Patch": "mitest.spec.interventions",
    "PathPatch": "mitest.spec.interventions",
    "Steer": "mitest.spec.interventions",
    "ablate": "mitest.spec.interventions",
    "combine": "mitest.spec.interventions",
    "patch": "mitest.spec.interventions",
    "path_patch": "mitest.spec.interventions",
    "scrub": "mitest.spec.interventions",
    "Scrub": "mitest.spec.interventions",
    "steer": "mitest.spec.interventions",
    "Model": "mitest.model.model",
    "Positions": "mitest.spec.positions",
    "as_positions": "mitest.spec.positions",
    "Prompts": "mitest.spec.prompts",
    "activations": "mitest.engine.measure",
    "measure": "mitest.engine.measure",
    "settings": "mitest.config",
    "Site": "mitest.spec.sites",
    "Sites": "mitest.spec.sites",
    "attn": "mitest.spec.sites",
    "direction": "mitest.spec.sites",
    "mean_difference": "mitest.engine.directions",
    "head": "mitest.spec.sites",
    "heads": "mitest.spec.sites",
    "mlp": "mitest.spec.sites",
    "neurons": "mitest.spec.sites",
    "resid": "mitest.spec.sites",
    "site": "mitest.spec.sites",
    "HOLDS": "mitest.claims.verdict",
    "INCONCLUSIVE": "mitest.claims.verdict",
    "REFUTED": "mitest.claims.verdict",
    "Verdict": "mitest.claims.verdict",
}

_MODULES = {"metrics", "stats", "strategies", "zoo"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mitest' has no attribute {name!r}")
    module_object = importlib.import_module(module)
    value = module_object if name in _MODULES else getattr(module_object, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
