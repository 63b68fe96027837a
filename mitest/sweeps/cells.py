"""The cells of a sweep: an intervention's sites expanded on a model, one component and position each."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mitest.engine.edits import check_index
from mitest.errors import InterventionError, SiteError, closest
from mitest.model.model import Model
from mitest.spec.interventions import Ablate, Intervention, Patch, PathPatch
from mitest.spec.positions import ALL, as_positions
from mitest.spec.prompts import Prompts
from mitest.spec.sites import ANY, Site, Sites


@dataclass(frozen=True)
class Cell:
    """One cell: its name (``"1.4"`` for head 4 of layer 1, else the site, ``@p`` for a position), its
    site, and its coordinates for tables and heatmaps."""

    name: str
    site: Site
    layer: int | None
    head: int | None
    neuron: int | None
    position: int | None


def swept_sites(template: Intervention) -> Sites:
    """The sites a sweep varies: those of an ablation or patch, or the sender of a path patch."""
    if isinstance(template, (Ablate, Patch)):
        return template.sites
    if isinstance(template, PathPatch):
        return template.sender
    raise InterventionError(
        f"mt.sweep varies the sites of mt.ablate, mt.patch or the sender of mt.path_patch; "
        f"got {type(template).__name__} (measure it with mt.measure)"
    )


def with_site(template: Intervention, site: Site) -> Intervention:
    """The template with its swept sites replaced by one cell's site."""
    if isinstance(template, PathPatch):
        return replace(template, sender=Sites([site]))
    assert isinstance(template, (Ablate, Patch)), "swept_sites refuses the other interventions"
    return replace(template, sites=Sites([site]))


def expand(template: Intervention, model: Model, prompts: Prompts, positions: str | None) -> list[Cell]:
    """Every cell of ``template`` on ``model``: each layer of a ``*`` pattern, each head or neuron of
    a site with components, and with ``positions="each"`` each token position."""
    if positions not in (None, "each"):
        raise SiteError(f"positions must be None (every position together) or 'each', got {positions!r}")
    widths = set(prompts.lengths.tolist())
    if positions == "each" and len(widths) != 1:
        raise SiteError(
            f"positions='each' sweeps token positions, which line up only when every prompt has the same "
            f"length; these have lengths {min(widths)} to {max(widths)}. Select prompts of one length"
        )
    cells: list[Cell] = []
    for site in swept_sites(template):
        if positions == "each" and site.positions != ALL:
            raise SiteError(f"{site} already selects positions; drop .at(...) to sweep each position")
        for concrete in _layers(site, model):
            for component in _components(concrete, model):
                for position in range(max(widths)) if positions == "each" else [None]:
                    cells.append(_cell(concrete, component, position))
    if not cells:
        raise SiteError("the sweep has no cells; give the intervention at least one site, e.g. mt.heads('*')")
    _check_distinct(cells)
    return cells


def _layers(site: Site, model: Model) -> list[Site]:
    """The site at each layer when its name holds the ``*`` pattern, else the site itself."""
    pattern = f"blocks.{ANY}."
    if not site.name.startswith(pattern):
        return [site]
    _, dims = model.layout()
    names = set(model.sites())
    rest = site.name[len(pattern) :]
    found = [replace(site, name=f"blocks.{layer}.{rest}") for layer in range(dims.n_layers)]
    found = [s for s in found if s.name in names]
    if not found:
        raise SiteError(f"no layer of this model has {rest!r}; see model.sites()")
    return found


def _components(site: Site, model: Model) -> list[int | None]:
    """The site's listed heads or neurons, all of them when none are listed, or None: the whole site."""
    point = model.resolve(site.name)
    check_index(site, point)
    if site.index is not None:
        return list(site.index)
    return list(range(point.components)) if point.components else [None]


def _cell(site: Site, component: int | None, position: int | None) -> Cell:
    one = replace(site, index=None if component is None else (component,))
    if position is not None:
        one = one.at(as_positions(position))
    parts = one.name.split(".")
    layer = int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else None
    is_head = component is not None and ".attn.hook_" in one.name
    name = f"{layer}.{component}" if is_head and one.name.endswith("hook_z") else str(replace(one, positions=ALL))
    if position is not None:
        name += f"@{position}"
    return Cell(
        name=name,
        site=one,
        layer=layer,
        head=component if is_head else None,
        neuron=component if component is not None and not is_head else None,
        position=position,
    )


def _check_distinct(cells: list[Cell]) -> None:
    counts: dict[str, int] = {}
    for cell in cells:
        counts[cell.name] = counts.get(cell.name, 0) + 1
    repeated = [name for name, count in counts.items() if count > 1]
    if repeated:
        shown = ", ".join(repeated[:5])
        raise SiteError(
            f"the sweep's cells overlap: {shown} appear(s) more than once (e.g. heads('*') already holds every "
            "head); list each cell once"
        )


def position_of(name: str, names: list[str], holder: str) -> int:
    """Where ``name`` is in ``names`` (a sweep's cells, an attribution's edges); else a :class:`SiteError`
    naming the closest ones. ``holder`` says what was indexed, e.g. ``"the sweep has no cell"``."""
    if name in names:
        return names.index(name)
    near = closest(str(name), names)
    hint = f"; closest: {', '.join(near)}" if near else ""
    raise SiteError(f"{holder} {name!r}{hint}. They are named like {names[0]!r}")
