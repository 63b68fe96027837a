"""How the parts of a combination meet when they edit the same activation entries.

Two edits *meet* when they are on the same hook point and cover a common entry (a common position of
some prompt and, for head or neuron sites, a common component). The rule, by each part's
``combines`` (:class:`~mitest.spec.interventions.Intervention`):

* an exact repeat of a ``"replace"`` edit (same intervention, same site) is dropped: setting entries
  twice to the same value is setting them once;
* two ``"replace"`` edits of the same intervention (same method and source, e.g. zero-ablating a
  layer's heads and one of them) meet harmlessly: both write the same values there;
* two ``"add"`` edits (steering) add up: ``steer(d, a) + steer(d, b)`` is ``steer(d, a + b)``;
* any other meeting (an ablation and a patch, a steer and an ablation, two different projections,
  an ``"ordered"`` intervention and anything) is refused with :class:`InterventionError` naming both,
  because the order of the parts, not the claim, would decide the numbers.

Edits that do not meet run in one pass as they would one after another. A cancelling combination
(``steer(d, 3) + steer(d, -3)``) is legal and is caught by the no-op check on its net effect.
"""

from __future__ import annotations

import dataclasses

from mitest.errors import InterventionError
from mitest.model.layouts import ResolvedSite
from mitest.model.model import Model
from mitest.spec.base import digest
from mitest.spec.interventions import Intervention, PathPatch, Steer
from mitest.spec.positions import ALL
from mitest.spec.prompts import Prompts
from mitest.spec.sites import Site, Sites

_HEAD_INPUTS = ("attn.hook_q", "attn.hook_k", "attn.hook_v")


def sites_of(part: Intervention) -> tuple[Site, ...]:
    """The sites a single intervention names (a path patch: its senders and receivers)."""
    if isinstance(part, Steer):
        return (part.direction,)
    if isinstance(part, PathPatch):
        return (*part.sender, *part.receivers)
    return tuple(getattr(part, "sites", ()))


def combined_parts(intervention: Intervention, model: Model, inputs: Prompts) -> list[Intervention]:
    """The parts to compile: exact repeats dropped, and refused if two of them meet (see the module)."""
    parts = _without_repeats(intervention.parts())
    if any(isinstance(part, PathPatch) for part in parts):  # runs alone; its edits are its own business
        return parts
    edits = [(part, site, model.resolve(site.name)) for part in parts for site in sites_of(part)]
    for _, site, _ in edits:
        site.positions.check_count(len(inputs))
    by_module: dict[int, list[Edited]] = {}
    for edit in edits:
        by_module.setdefault(id(edit[2].module), []).append(edit)
    shared = any(len(group) > 1 for group in by_module.values())
    how = {id(part): _replacement(part) for part in parts} if shared else {}  # read only where edits share
    for group in by_module.values():
        for i, first in enumerate(group):
            for second in group[i + 1 :]:
                if _same_replacement(first, second):
                    continue
                if _meet(first, second, inputs) and not _compatible(first, second, how):
                    raise InterventionError(_conflict(first, second))
    return parts


def _same_replacement(first: Edited, second: Edited) -> bool:
    """Two whole-entry sites of one ``"replace"`` or ``"add"`` part: compatible wherever they meet."""
    (x, a, _), (y, b, _) = first, second
    return x is y and x.combines != "ordered" and a.direction is None and b.direction is None


def _without_repeats(parts: tuple[Intervention, ...]) -> list[Intervention]:
    """Each ``"replace"`` part with the sites no earlier part set the same way; parts left empty dropped."""
    seen: set[tuple[str, Site]] = set()
    kept = []
    for part in parts:
        sites = getattr(part, "sites", None)
        if part.combines != "replace" or not isinstance(sites, Sites):
            kept.append(part)
            continue
        how = _replacement(part) if len(parts) > 1 else ""  # one part repeats only its own sites
        fresh = []
        for site in sites:
            if (how, site) not in seen:
                seen.add((how, site))
                fresh.append(site)
        if len(fresh) == len(sites):
            kept.append(part)
        elif fresh:
            kept.append(dataclasses.replace(part, sites=Sites(fresh)))  # type: ignore[type-var]
    return kept


Edited = tuple[Intervention, Site, ResolvedSite]


def _meet(first: Edited, second: Edited, inputs: Prompts) -> bool:
    """Whether two edits cover a common activation entry of the prompts the pass runs on."""
    (_, a, p), (_, b, q) = first, second
    if (p.module, p.kind, p.addend) != (q.module, q.kind, q.addend):
        return False
    if p.name != q.name:  # two views of one module's activation
        # The q, k and v of a fused projection are disjoint slices of its output; other views may overlap.
        return not (p.name.endswith(_HEAD_INPUTS) and q.name.endswith(_HEAD_INPUTS))
    if a.index is not None and b.index is not None and not set(a.index) & set(b.index):
        return False
    if a.positions == ALL and b.positions == ALL:
        return True
    width = inputs.tokens.shape[1]
    masks = [site.positions.mask(inputs.lengths, width, inputs.index) for site in (a, b)]
    return bool((masks[0] & masks[1]).any())


def _compatible(first: Edited, second: Edited, how: dict[int, str]) -> bool:
    """Whether two meeting edits give the same result in either order (see the module's rule);
    ``how`` holds each part's :func:`_replacement`."""
    (x, a, _), (y, b, _) = first, second
    if x.combines == y.combines == "add":
        return True
    if x.combines == y.combines == "replace" and how[id(x)] == how[id(y)]:
        return a.direction is None and b.direction is None or a == b
    return False


def _replacement(part: Intervention) -> str:
    """What a part writes, whatever its sites: its type and every other field."""
    data = part.to_dict()
    data.pop("sites", None)
    return digest(data)


def _conflict(first: Edited, second: Edited) -> str:
    (x, a, _), (y, b, _) = first, second
    return (
        f"{_name(x)} of {a} and {_name(y)} of {b} edit the same entries of {a.name}; in one pass the later "
        "one would silently overwrite or reshape the earlier one, so the order, not the claim, would decide "
        "the numbers. Measure them separately, or restrict them to different heads, neurons or positions "
        "(.at(...)) so they do not overlap"
    )


def _name(part: Intervention) -> str:
    kind = type(part).__name__.lower()
    method = getattr(part, "method", None)
    return f"{kind}({method})" if isinstance(method, str) else kind
