"""Edits: what one hook does to one site's activation during an intervened pass.

An :class:`Edit` pairs a site with a value function; :func:`apply` turns it into the hook's
replacement (projected onto a direction, restricted to the site's positions and components, and
keeping attention patterns off padding). The helpers here select and slice stored activations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mitest.errors import InterventionError, SiteError
from mitest.model.layouts import ResolvedSite
from mitest.spec.positions import ALL
from mitest.spec.prompts import Prompts
from mitest.spec.sites import Site

# value(view, batch) -> the replacement for the whole view (only the site's entries are used)
ValueFn = Callable[[torch.Tensor, Prompts], torch.Tensor]


@dataclass(frozen=True)
class Edit:
    """Replace ``site``'s entries at ``point`` by ``value``; ``project`` keeps only the change along
    the site's direction; ``adds`` marks an edit that adds to what it is given (a steer)."""

    site: Site
    point: ResolvedSite
    value: ValueFn
    project: bool = False
    adds: bool = False


def apply(edit: Edit, view: torch.Tensor, batch: Prompts) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The activation ``view`` of ``batch`` after ``edit``, and the mask of the entries it covers
    (None: all of them)."""
    site, point = edit.site, edit.point
    value = edit.value(view, batch)
    if edit.project:
        unit = unit_direction(site, view)
        shift = ((value.float() - view.float()) @ unit).unsqueeze(-1) * unit
        value = (view.float() + shift).to(view.dtype)
    if point.kind == "pattern":  # a pattern never puts weight on a prompt's padding
        keys = torch.arange(view.shape[-1], device=view.device) < batch.lengths.to(view.device)[:, None]
        value = value * keys[:, None, None, :]
    select = selection_mask(view, batch, site)
    return (value if select is None else torch.where(select, value, view)), select


def selection_mask(view: torch.Tensor, batch: Prompts, site: Site) -> torch.Tensor | None:
    """Boolean mask broadcastable to ``view`` of the entries the site covers (None: all)."""
    select = None
    if site.positions != ALL:
        if view.dim() < 2 or view.shape[0] not in (1, len(batch)) or view.shape[1] != batch.tokens.shape[1]:
            raise InterventionError(
                f"{site.name} has shape {tuple(view.shape)}, not [batch, pos, ...]; positions cannot be "
                "selected on it (use positions='all')"
            )
        select = site.positions.mask(batch.lengths, view.shape[1], batch.index).to(view.device)
        select = select.view(*select.shape, *[1] * (view.dim() - 2))
    if site.index is not None:
        components = torch.zeros(view.shape[2], dtype=torch.bool, device=view.device)
        components[list(site.index)] = True
        components = components.view(1, 1, -1, *[1] * (view.dim() - 3))
        select = components if select is None else select & components
    return select


def take_rows(acts: torch.Tensor, rows: torch.Tensor, view: torch.Tensor, point: ResolvedSite) -> torch.Tensor:
    """Rows ``rows`` of stored activations ``acts``, cut to the length (and shape) of ``view``."""
    length = view.shape[1]
    value = acts[rows.to(acts.device), :length]
    if point.kind == "pattern":
        value = value[..., :length]
    return value.to(view.device)


def check_index(site: Site, point: ResolvedSite) -> None:
    """Raise :class:`SiteError` unless the site's head or neuron indices exist at ``point``."""
    if site.index is None:
        return
    if point.components is None:
        raise SiteError(
            f"{site.name} has no heads or neurons to index; drop the index, or use an attention "
            "head site (blocks.L.attn.hook_z) or mlp.hook_post"
        )
    bad = [i for i in site.index if not 0 <= i < point.components]
    if bad:
        raise SiteError(
            f"{site.name} has {point.components} components (0..{point.components - 1}); index {bad[0]} does not exist"
        )


def fit(vector: torch.Tensor, view: torch.Tensor, site: Site) -> torch.Tensor:
    """``vector`` on the view's device, after checking it matches the view's last dimension."""
    if vector.shape[0] != view.shape[-1]:
        raise InterventionError(
            f"direction for {site.name} has {vector.shape[0]} entries but the activation's last dimension "
            f"is {view.shape[-1]}"
        )
    return vector.to(view.device)


def unit_direction(site: Site, view: torch.Tensor) -> torch.Tensor:
    """The site's direction as a float32 unit vector on the view's device."""
    vector = fit(torch.tensor(site.direction, dtype=torch.float64), view, site)
    vector = vector / vector.abs().max()  # the norm of a huge or tiny vector over- or underflows
    return (vector / vector.norm()).to(torch.float32)
