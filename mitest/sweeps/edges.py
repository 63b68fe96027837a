"""The edges of an edge attribution: senders and receivers expanded on a model, one component each.

A sender is a writer of the residual stream (``hook_embed``, one head's ``hook_z``, an MLP's
output); a receiver is one head's query, key or value input, an MLP's input or ``"logits"``, as
``mt.path_patch`` takes them. An edge joins a sender to a receiver that reads the stream after the
sender writes it (see :mod:`mitest.model.residual`). Names follow path patching and ``mt.circuit``:
``"0.0 -> 1.2.q"``, ``"1.1 -> mlp 1"``, ``"hook_embed -> 0.3.k"``, ``"1.3 -> logits"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from mitest.engine.edits import check_index
from mitest.errors import SiteError
from mitest.model.model import Model
from mitest.model.residual import LOGITS, check_separate_heads, read_stage, reader_sites, write_stage
from mitest.spec.positions import ALL
from mitest.spec.sites import ANY, Site, as_sites

RECEIVE_ALL = "all"
_INPUTS = ("q", "k", "v")
_LAYER_SITE = re.compile(r"blocks\.(\d+)\.(.+)")


@dataclass(frozen=True)
class GraphEdge:
    """One edge: its name, the sender's writer site, the receiver as ``mt.path_patch`` takes it, and
    the site whose value is the receiver's input (what the gradient is taken at)."""

    name: str
    sender: Site
    receiver: Site
    reader: Site


def graph_edges(model: Model, senders: object, receivers: object) -> list[GraphEdge]:
    """Every edge from ``senders`` to ``receivers`` (``"all"``: every head input, MLP and the logits)
    on ``model``, senders in forward order, each sender's receivers in forward order."""
    writers = _senders(model, senders)
    readers = (
        _every_receiver(model)
        if isinstance(receivers, str) and receivers == RECEIVE_ALL
        else _receivers(model, receivers)
    )
    edges = []
    for sender in writers:
        for receiver in readers:
            (reader,) = reader_sites(model, receiver)
            if write_stage(sender.name) <= read_stage(model, reader.name):
                edges.append(GraphEdge(f"{label(sender)} -> {label(receiver)}", sender, receiver, reader))
    if not edges:
        raise SiteError(
            "no receiver reads the residual stream after these senders write it; a path runs forward, so "
            "pick later receivers (or receivers='all')"
        )
    return edges


def label(site: Site) -> str:
    """A component's short name: ``1.4`` for a head, ``1.4.q`` for its query input, ``mlp 1``, else the site."""
    found = _LAYER_SITE.fullmatch(site.name)
    if found is None:
        return site.name
    layer, kind = found.groups()
    if kind in ("hook_mlp_out", "hook_mlp_in"):
        return f"mlp {layer}"
    assert site.index is not None, "edge heads are single heads"
    suffix = "" if kind == "attn.hook_z" else f".{kind.removeprefix('attn.hook_')}"
    return f"{layer}.{site.index[0]}{suffix}"


def _senders(model: Model, spec: object) -> list[Site]:
    found: list[Site] = []
    for site in as_sites(spec):
        _whole_positions(site, "sender")
        if site.name.endswith(".hook_attn_out"):
            site = Site(site.name.replace(".hook_attn_out", ".attn.hook_z"), None, site.positions)
        for concrete in _layers(model, site):
            write_stage(concrete.name)  # raises for sites that do not write to the residual stream
            found.extend(_components(model, concrete))
    return _distinct(sorted(found, key=lambda s: (write_stage(s.name), s.index or ())), "senders")


def _receivers(model: Model, spec: object) -> list[Site]:
    found: list[Site] = []
    for site in as_sites(spec):
        _whole_positions(site, "receiver")
        if site.name == LOGITS:
            found.append(site)
            continue
        for concrete in _layers(model, site):
            match = _LAYER_SITE.fullmatch(concrete.name)
            if match is None:
                raise SiteError(
                    f"{concrete.name!r} is not an edge's receiver: name heads (mt.heads('1.*')), their q/k/v "
                    "inputs, MLP inputs (mt.mlp(L)) or 'logits'"
                )
            _, kind = match.groups()
            if kind == "attn.hook_z":  # a whole head: its three inputs
                check_separate_heads(model, f"{concrete} as a receiver")
                for part in _INPUTS:
                    found.extend(_components(model, replace(concrete, name=concrete.name[:-1] + part)))
            elif kind in ("attn.hook_q", "attn.hook_k", "attn.hook_v"):
                found.extend(_components(model, concrete))
            elif kind in ("hook_mlp_out", "mlp.hook_post", "mlp.hook_pre"):
                reader_sites(model, concrete)  # raises for neurons, which share the MLP's input
                found.append(Site(f"blocks.{concrete.name.split('.')[1]}.hook_mlp_out"))
            else:
                raise SiteError(
                    f"{concrete} is not an edge's receiver; name a head input (mt.heads('1.0', kind='k')), a head "
                    "(its three inputs), an MLP (mt.mlp(1)) or 'logits'"
                )
    return _distinct(sorted(found, key=_read_order(model)), "receivers")


def _every_receiver(model: Model) -> list[Site]:
    dims = model.layout()[1]
    sites: list[Site] = []
    for layer in range(dims.n_layers):
        for part in _INPUTS:
            count = dims.n_heads if part == "q" else dims.n_kv_heads
            sites.extend(Site(f"blocks.{layer}.attn.hook_{part}", (h,)) for h in range(count))
        sites.append(Site(f"blocks.{layer}.hook_mlp_out"))
    return [*sites, Site(LOGITS)]


def _read_order(model: Model) -> Callable[[Site], tuple[int, int, tuple[int, ...]]]:
    """Receivers by the stage they read at, then q, k, v, the MLP; heads in order."""

    def key(site: Site) -> tuple[int, int, tuple[int, ...]]:
        (reader,) = reader_sites(model, site)
        part = reader.name.removeprefix("blocks.").split("hook_")[-1]
        return read_stage(model, reader.name), _INPUTS.index(part) if part in _INPUTS else 3, site.index or ()

    return key


def _layers(model: Model, site: Site) -> list[Site]:
    """The site at each layer for a ``blocks.*.`` pattern (``mt.heads("*")``, ``mt.mlp("*")``), else itself."""
    pattern = f"blocks.{ANY}."
    if not site.name.startswith(pattern):
        return [site]
    rest = site.name[len(pattern) :]
    return [replace(site, name=f"blocks.{layer}.{rest}") for layer in range(model.layout()[1].n_layers)]


def _components(model: Model, site: Site) -> list[Site]:
    """A head site as one site per head (its listed heads, or all of them); other sites as they are."""
    point = model.resolve(site.name)
    if ".attn.hook_" not in site.name:
        if site.index is not None:
            raise SiteError(f"{site}: an edge's end is a whole MLP, a head or the embedding; drop the index")
        return [site]
    check_index(site, point)
    indices = site.index if site.index is not None else tuple(range(point.components or 0))
    return [replace(site, index=(index,)) for index in indices]


def _whole_positions(site: Site, role: str) -> None:
    if site.positions != ALL:
        raise SiteError(f"{site}: an edge covers every position; drop .at(...) from the {role}")


def _distinct(sites: list[Site], role: str) -> list[Site]:
    repeated = sorted({label(site) for site in sites if sites.count(site) > 1})
    if repeated:
        raise SiteError(
            f"the {role} name {', '.join(repeated)} more than once (mt.heads('*') holds every head); list each once"
        )
    return sites
