"""mitest: falsifiable, statistically tested claims about neural network internals.

Quick tour::

    import mitest as mt
    model = mt.Model.load("path/to/model")
    prompts = mt.Prompts(tokens, answers=answers, wrong=wrong)
    effect = mt.measure(model, prompts, mt.ablate(mt.heads("1.4", "1.6"), method="mean"),
                        metric=mt.metrics.logit_diff)
    effect.per_prompt
"""

from . import metrics, stats
from .claims import ClaimInconclusive, ClaimRefuted, Effect, expect_monotonic
from .errors import (
    HookNotFiredError,
    InterventionError,
    MetricError,
    MitestError,
    ModelLoadError,
    NoOpInterventionWarning,
    PositionsError,
    PromptsError,
    SiteError,
)
from .interventions import Ablate, Combined, Intervention, Patch, Steer, ablate, combine, patch, steer
from .model import Model
from .positions import Positions, as_positions
from .prompts import Prompts
from .run import measure
from .settings import settings
from .sites import Site, Sites, attn, direction, head, heads, mlp, neurons, resid, site
from .verdict import HOLDS, INCONCLUSIVE, REFUTED, Verdict

__version__ = "0.1.0"

__all__ = [
    "HOLDS",
    "INCONCLUSIVE",
    "REFUTED",
    "Ablate",
    "ClaimInconclusive",
    "ClaimRefuted",
    "Combined",
    "Effect",
    "HookNotFiredError",
    "Intervention",
    "InterventionError",
    "MetricError",
    "MitestError",
    "Model",
    "ModelLoadError",
    "NoOpInterventionWarning",
    "Patch",
    "Positions",
    "PositionsError",
    "Prompts",
    "PromptsError",
    "Site",
    "SiteError",
    "Sites",
    "Steer",
    "ablate",
    "as_positions",
    "attn",
    "combine",
    "direction",
    "expect_monotonic",
    "head",
    "heads",
    "measure",
    "metrics",
    "mlp",
    "neurons",
    "patch",
    "resid",
    "settings",
    "site",
    "stats",
    "steer",
    "Verdict",
]
