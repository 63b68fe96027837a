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
    from . import metrics, stats, strategies, zoo
    from .circuits import CircuitTest, circuit
    from .claims import Effect, expect_monotonic
    from .config import settings
    from .directions import mean_difference
    from .errors import (
        BaselineError,
        BaselineRegression,
        CandidateError,
        ClaimFailure,
        ClaimInconclusive,
        ClaimRefuted,
        HookNotFiredError,
        HypothesisError,
        InconclusiveWarning,
        InterventionError,
        MetricError,
        MitestError,
        MitestWarning,
        ModelError,
        ModelLoadError,
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
    from .hypothesis import Hypothesis
    from .interventions import (
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
    from .model import Model
    from .positions import Positions, as_positions
    from .prompts import Prompts
    from .properties import expect_for_all
    from .run import activations, measure
    from .sites import (
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
    from .verdict import HOLDS, INCONCLUSIVE, REFUTED, Verdict

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "metrics": "mitest.metrics",
    "stats": "mitest.stats",
    "strategies": "mitest.strategies",
    "zoo": "mitest.zoo",
    "Effect": "mitest.claims",
    "expect_monotonic": "mitest.claims",
    "expect_for_all": "mitest.properties",
    "circuit": "mitest.circuits",
    "CircuitTest": "mitest.circuits",
    "BaselineError": "mitest.errors",
    "BaselineRegression": "mitest.errors",
    "CandidateError": "mitest.errors",
    "ClaimFailure": "mitest.errors",
    "ClaimInconclusive": "mitest.errors",
    "ClaimRefuted": "mitest.errors",
    "HookNotFiredError": "mitest.errors",
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
    "Ablate": "mitest.interventions",
    "Combined": "mitest.interventions",
    "Intervention": "mitest.interventions",
    "Hypothesis": "mitest.hypothesis",
    "Patch": "mitest.interventions",
    "PathPatch": "mitest.interventions",
    "Steer": "mitest.interventions",
    "ablate": "mitest.interventions",
    "combine": "mitest.interventions",
    "patch": "mitest.interventions",
    "path_patch": "mitest.interventions",
    "scrub": "mitest.interventions",
    "Scrub": "mitest.interventions",
    "steer": "mitest.interventions",
    "Model": "mitest.model",
    "Positions": "mitest.positions",
    "as_positions": "mitest.positions",
    "Prompts": "mitest.prompts",
    "activations": "mitest.run",
    "measure": "mitest.run",
    "settings": "mitest.config",
    "Site": "mitest.sites",
    "Sites": "mitest.sites",
    "attn": "mitest.sites",
    "direction": "mitest.sites",
    "mean_difference": "mitest.directions",
    "head": "mitest.sites",
    "heads": "mitest.sites",
    "mlp": "mitest.sites",
    "neurons": "mitest.sites",
    "resid": "mitest.sites",
    "site": "mitest.sites",
    "HOLDS": "mitest.verdict",
    "INCONCLUSIVE": "mitest.verdict",
    "REFUTED": "mitest.verdict",
    "Verdict": "mitest.verdict",
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
