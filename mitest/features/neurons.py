"""``mt.expect_selective``: a neuron fires more on one prompt set than on another (a two-sample claim)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mitest.claims.levels import expect_difference
from mitest.claims.verdict import Verdict
from mitest.engine.measure import activations, checked_inputs
from mitest.errors import MitestError, SiteError
from mitest.features.readings import reading_identity
from mitest.model.model import Model
from mitest.spec.positions import ALL
from mitest.spec.prompts import Prompts
from mitest.spec.sites import Site, as_sites


def neuron_values(model: Model, prompts: Prompts, site: Site, batch_size: int = 32) -> np.ndarray:
    """Per prompt, the mean activation of a one-component site (``mt.neurons(L, i)``) over its positions."""
    values = activations(model, prompts, site.at(ALL), batch_size=batch_size)  # [n, seq, 1], 0 at padding
    chosen = site.positions.mask(prompts.lengths, values.shape[1], prompts.index)
    counts = chosen.sum(1)
    if bool((counts == 0).any()):
        i = int((counts == 0).nonzero()[0])
        raise SiteError(f"{site} selects no position of prompt {i} (length {int(prompts.lengths[i])})")
    return ((values[..., 0] * chosen).sum(1) / counts).numpy().astype(np.float64)


def expect_selective(
    model: Model | Any,
    site: Any,
    prompts: Prompts,
    others: Prompts,
    *,
    at_least: float,
    alpha: float | None = None,
    batch_size: int = 32,
) -> Verdict:
    """Claim: the neuron ``site`` (e.g. ``mt.neurons(0, 167).at("last")``) is on average at least
    ``at_least`` more active on ``prompts`` than on ``others`` (two independent sets, Welch t).

    Each prompt's value is the neuron's mean activation over the site's positions. Prompt groups are
    not modelled by this test: sets with ``groups`` are refused.
    """
    __tracebackhide__ = True
    model = checked_inputs(model, prompts, batch_size)
    checked_inputs(model, others, batch_size)
    sites = as_sites(site)
    if len(sites) != 1 or sites[0].index is None or len(sites[0].index) != 1 or sites[0].direction is not None:
        raise SiteError(f"expect_selective reads one neuron (e.g. mt.neurons(0, 167).at('last')), got {site}")
    if prompts.groups is not None or others.groups is not None:
        raise MitestError(
            "expect_selective treats prompts as independent; its two-sample test does not model prompt groups "
            "(templates): build the prompt sets without groups=..."
        )
    neuron = sites[0]
    first, second = (neuron_values(model, p, neuron, batch_size) for p in (prompts, others))
    spec = {"reading": "neuron selectivity", "site": neuron.to_dict()}
    identity = reading_identity(model.revision, (prompts, others), spec)
    return expect_difference(
        first,
        second,
        at_least,
        claim=f"{neuron} is at least {at_least:g} more active on the first prompt set than on the second",
        metric=f"activation of {neuron}",
        identity=identity,
        spec=spec,
        alpha=alpha,
    )
