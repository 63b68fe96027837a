"""The Effect of a run, with the identity of what produced its values."""

from __future__ import annotations

from typing import Any

import numpy as np

from mitest.claims.effect import Effect
from mitest.engine.hooks import HookStats
from mitest.engine.runner import Engine
from mitest.spec.base import digest, identity, source_key
from mitest.spec.interventions import Intervention
from mitest.spec.metrics import Custom, Metric
from mitest.spec.prompts import Prompts


def effect_of(
    engine: Engine,
    prompts: Prompts,
    intervention: Intervention,
    metric: Metric,
    values: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    stats: list[HookStats],
    flipped: np.ndarray,
    notes: tuple[str, ...] = (),
) -> Effect:
    """The Effect of a run: ``values`` are the clean, intervened and base metric per prompt."""
    clean, intervened, corrupted = values
    spec = intervention.to_dict()
    return Effect(
        clean=clean,
        intervened=intervened,
        corrupted=corrupted,
        groups=prompts.groups,
        intervention=spec,
        metric=metric.name,
        hooks=tuple({"site": s.site, "fired": s.fired, "changed": s.changed} for s in stats),
        flipped=flipped,
        identity=claim_identity(engine.model.revision_at(engine.version), prompts, spec, metric),
        notes=notes,
    )


def claim_identity(revision: str, prompts: Prompts, intervention: dict[str, Any], metric: Metric) -> dict[str, Any]:
    """What produced an Effect's values (``intervention`` is the spec's ``to_dict()``): hashes of
    everything but floats, which are listed as ``parameters`` (compared with a tolerance) and
    ``derived`` vectors (compared, never matched on)."""
    spec = identity(intervention)
    measured = None if isinstance(metric, Custom) else identity(metric.to_dict())
    custom = f"custom:{metric.name}:{digest(source_key(metric.fn))}" if isinstance(metric, Custom) else ""
    return {
        "model": revision,
        "prompts": prompts.fingerprint,
        "intervention": spec.key,
        "metric": custom if measured is None else measured.key,
        "parameters": {
            **{f"intervention.{path}": value for path, value in spec.parameters.items()},
            **{f"metric.{path}": value for path, value in (measured.parameters if measured else {}).items()},
        },
        "derived": spec.derived,
        "structure": {"intervention": spec.structure, "metric": measured.structure if measured else metric.name},
    }
