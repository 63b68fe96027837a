"""Circuit hypotheses as data, for causal scrubbing: nodes, the edges between them, and features.

A :class:`Hypothesis` names *nodes* (attention heads of one layer, an MLP, the token embedding, or
the residual stream at a point, which stands for everything written before it),
*edges* saying which node's output feeds which node's input, and optionally a *feature* per node:
a function of a prompt whose value is all the claim says the node computes. Prompts that agree on
a node's feature are interchangeable for it. The root ``"output"`` is the residual stream's end,
which the unembedding reads; edges into it name what the claim says the logits depend on.

An edge into a head node may name one of its inputs, ``"induction.k"`` (also ``.q``, ``.v``); a
bare name means all of them. See :func:`mitest.scrub` for what scrubbing does with a hypothesis.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from mitest.errors import HypothesisError, closest
from mitest.spec.base import Spec
from mitest.spec.positions import ALL
from mitest.spec.sites import Site, as_sites

OUTPUT = "output"
HEAD_INPUTS = ("q", "k", "v")
NODE_SITES = r"blocks\.\d+\.(attn\.hook_z|hook_mlp_out|hook_resid_pre|hook_resid_mid|hook_resid_post)"
ALL_INPUTS = "all"

Feature = Callable[["Prompt"], Hashable]


class Prompt(NamedTuple):
    """One prompt as a feature function sees it: its real tokens, answer, wrong answer and group."""

    tokens: tuple[int, ...]
    answer: int | None
    wrong: int | None
    group: Any
    index: int  # type: ignore[assignment]  # shadows tuple.index; renaming would change what features read


class Edge(NamedTuple):
    """``parent``'s output feeds ``child``'s input ``read`` (``"q"``, ``"k"``, ``"v"`` or ``"all"``)."""

    parent: str
    child: str
    read: str


@dataclass(frozen=True)
class Hypothesis(Spec):
    """A claim about which paths compute a behaviour, and what each node on them computes.

    Args:
        nodes: name -> site: heads of one layer (``mt.heads("1.0", "1.2")``), an MLP
            (``mt.mlp(0)``), the token embedding (``"hook_embed"``), or the residual stream at a point
            (``mt.resid(1, "pre")``: everything written before it, as one node), optionally
            ``.at(positions)`` (the node is claimed at those positions only).
        edges: ``(parent, child)`` pairs; ``child`` is a node, ``"node.q"``/``.k``/``.v`` for one
            input of a head node, or ``"output"``.
        features: node name -> ``f(prompt) -> hashable``; prompts with equal ``f`` are
            interchangeable for that node. A node without a feature is claimed to depend on its
            whole prompt (no resampling of its own inputs beyond what its edges leave out).
    """

    nodes: tuple[tuple[str, Site], ...]
    edges: tuple[Edge, ...]
    features: tuple[tuple[str, Feature], ...] = ()

    def __init__(
        self,
        nodes: Mapping[str, Any],
        edges: Iterable[tuple[str, str]],
        features: Mapping[str, Feature] | None = None,
    ) -> None:
        named = tuple((_node_name(name), _node_site(name, site)) for name, site in dict(nodes).items())
        _check_disjoint(named)
        object.__setattr__(self, "nodes", named)
        object.__setattr__(self, "edges", tuple(_edge(self, edge) for edge in edges))
        repeated = {edge for edge in self.edges if self.edges.count(edge) > 1}
        if repeated:
            parent, child, read = sorted(repeated)[0]
            raise HypothesisError(f"edge {parent!r} -> {child!r} ({read}) is listed twice; list each edge once")
        object.__setattr__(self, "features", tuple(_features(self, features or {})))
        self._check_reachable()

    def site(self, name: str) -> Site:
        """The site of node ``name``."""
        return dict(self.nodes)[name]

    def feature(self, name: str) -> Feature | None:
        """The feature function of node ``name``, or None."""
        return dict(self.features).get(name)

    def parents(self, child: str, read: str) -> tuple[str, ...]:
        """The nodes the claim says feed input ``read`` of ``child`` (edges to all inputs included)."""
        return tuple(e.parent for e in self.edges if e.child == child and e.read in (read, ALL_INPUTS))

    def to_dict(self) -> dict[str, Any]:
        """Plain data; features are identified by name and a hash of their source code."""
        return {
            "type": "Hypothesis",
            "nodes": {name: site.to_dict() for name, site in self.nodes},
            "edges": [list(edge) for edge in self.edges],
            "features": {name: _feature_key(fn) for name, fn in self.features},
        }

    def _check_reachable(self) -> None:
        reached: set[str] = set()
        frontier = {OUTPUT}
        while frontier:
            child = frontier.pop()
            parents = {e.parent for e in self.edges if e.child == child} - reached
            reached |= parents
            frontier |= parents
        unused = [name for name, _ in self.nodes if name not in reached]
        if unused:
            raise HypothesisError(
                f"node {unused[0]!r} has no path of edges to 'output', so the claim says nothing about it; "
                "add the edges it feeds or drop the node"
            )


def is_residual(site: Site) -> bool:
    """Whether a node is a residual-stream point (the sum of every writer before it) rather than a writer."""
    return site.name.split(".")[-1] in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post")


def _node_name(name: Any) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w-]*", name) or name == OUTPUT:
        raise HypothesisError(f"node names are identifiers other than 'output' (the root), got {name!r}")
    return name


def _node_site(name: str, spec: Any) -> Site:
    sites = as_sites(spec)
    if len(sites) != 1:
        raise HypothesisError(
            f"node {name!r} spans {len(sites)} sites ({', '.join(map(str, sites))}); a node is heads of one layer, "
            "one MLP or the embedding: make one node per layer"
        )
    site = sites[0]
    if site.name.endswith(".hook_attn_out"):
        site = Site(site.name.replace(".hook_attn_out", ".attn.hook_z"), None, site.positions)
    if site.direction is not None:
        raise HypothesisError(f"node {name!r}: a node is a whole site; drop the direction")
    if not (site.name == "hook_embed" or re.fullmatch(NODE_SITES, site.name)):
        raise HypothesisError(
            f"node {name!r} is {site.name}, which is not a node a hypothesis can claim; use heads "
            "(mt.heads('1.0')), an MLP (mt.mlp(0)), the token embedding ('hook_embed') or the residual "
            "stream at a point (mt.resid(1, 'pre'), optionally .at(positions))"
        )
    if is_residual(site) and site.index is not None:
        raise HypothesisError(f"node {name!r}: the residual stream has no heads or neurons to index")
    return site


def _check_disjoint(nodes: tuple[tuple[str, Site], ...]) -> None:
    """Two nodes may share a site only on different heads or at different positions."""
    for i, (first, a) in enumerate(nodes):
        for second, b in nodes[i + 1 :]:
            if a.name != b.name or ALL not in (a.positions, b.positions) and a.positions != b.positions:
                continue  # other sites, or named positions the user keeps apart
            if a.index is not None and b.index is not None and not set(a.index) & set(b.index):
                continue
            raise HypothesisError(
                f"nodes {first!r} and {second!r} both claim {a.name} (heads {a.index or 'all'} and "
                f"{b.index or 'all'}); a component belongs to one node, so split the heads between them"
            )


def _edge(hypothesis: Hypothesis, edge: Any) -> Edge:
    if not (isinstance(edge, (tuple, list)) and len(edge) == 2 and all(isinstance(e, str) for e in edge)):
        raise HypothesisError(f"an edge is a (parent, child) pair of node names, got {edge!r}")
    parent, target = edge
    names = [name for name, _ in hypothesis.nodes]
    child, _, read = target.partition(".")
    read = read or ALL_INPUTS
    for name in (parent, child):
        if name not in names and name != OUTPUT:
            hint = closest(name, [*names, OUTPUT])
            raise HypothesisError(
                f"edge {parent!r} -> {target!r}: no node {name!r}"
                + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else "")
                + f" Nodes: {', '.join(names)}, and the root 'output'"
            )
    if parent == OUTPUT:
        raise HypothesisError(f"edge {parent!r} -> {target!r}: 'output' is the root; nothing reads it")
    if child != OUTPUT and hypothesis.site(child).name == "hook_embed":
        raise HypothesisError(f"edge {parent!r} -> {target!r}: the embedding {child!r} reads no other node")
    is_head = child != OUTPUT and hypothesis.site(child).name.endswith("attn.hook_z")
    if read != ALL_INPUTS and (not is_head or read not in HEAD_INPUTS):
        raise HypothesisError(
            f"edge {parent!r} -> {target!r}: .{read} names an input of a head node (.q, .k or .v); "
            "other nodes have one input: write the bare node name"
        )
    if parent == child:
        raise HypothesisError(f"edge {parent!r} -> {target!r} feeds a node to itself")
    return Edge(parent, child, read)


def _features(hypothesis: Hypothesis, features: Mapping[str, Feature]) -> Iterable[tuple[str, Feature]]:
    names = [name for name, _ in hypothesis.nodes]
    for name, fn in features.items():
        if name not in names:
            hint = closest(name, names)
            raise HypothesisError(
                f"feature for unknown node {name!r}"
                + (f"; did you mean {hint[0]!r}?" if hint else "")
                + " ('output' always reads the prompt itself)"
            )
        if not callable(fn):
            raise HypothesisError(f"feature of node {name!r} must be a function f(prompt) -> hashable")
        yield name, fn


def _feature_key(fn: Feature) -> str:
    """A name for a feature function that is stable across runs and changes when its code does."""
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return name
    return f"{name}:{hashlib.sha256(source.encode()).hexdigest()[:12]}"
