"""Directions computed from the model under test, built with the recipe that identifies them in claims."""

from __future__ import annotations

from typing import Any

import numpy as np

from mitest.engine.measure import activations
from mitest.errors import SiteError
from mitest.model.model import Model
from mitest.spec.base import digest
from mitest.spec.prompts import Prompts
from mitest.spec.sites import Site, as_sites, direction


def mean_difference(model: Model, prompts: Prompts, site: Any, where: Any, *, batch_size: int = 32) -> Site:
    """The mean activation of the prompts where ``where`` is true minus that of the others, as a direction.

    ``site`` must select one vector per prompt (for example ``mt.site("blocks.0.hook_attn_out").at("last")``).
    The direction is ``derived`` (see :func:`mitest.direction`): claims on it are identified by this
    recipe (site, prompt-set fingerprint and split), its values are recorded with the baseline, and a
    new model release reports how far it moved instead of becoming a different claim.
    """
    sites = as_sites(site)
    if len(sites) != 1:
        raise SiteError(f"mean_difference() reads one site, got {len(sites)}: {', '.join(map(str, sites))}")
    split = np.asarray(getattr(where, "numpy", lambda: where)(), dtype=object)
    if split.shape != (len(prompts),) or not all(isinstance(v, (bool, np.bool_)) for v in split):
        raise SiteError(f"where must hold one True/False per prompt ({len(prompts)}), got shape {split.shape}")
    split = split.astype(bool)
    if split.all() or not split.any():
        raise SiteError("where must split the prompts into two non-empty sets (some True, some False)")
    outputs = activations(model, prompts, sites[0], batch_size=batch_size)
    if outputs.ndim != 2:
        raise SiteError(
            f"mean_difference() needs one vector per prompt, but {sites[0]} gives shape {tuple(outputs.shape[1:])} "
            "per prompt; select one position (e.g. .at('last')) and no head or neuron subset"
        )
    mask = np.asarray(split)
    vector = outputs[mask].mean(0) - outputs[~mask].mean(0)
    recipe = (
        f"mean difference at {sites[0]} of prompts {prompts.fingerprint}, "
        f"{int(mask.sum())} vs {int((~mask).sum())} split {digest(mask.tolist())}"
    )
    return direction(sites[0], vector, derived=recipe)
