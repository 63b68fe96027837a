"""``mt.attribute_edges``: gradient estimates of every edge's path-patching effect, checked against it.

An edge is a direct path through the residual stream from a sender (the embedding, a head, an MLP)
to a receiver (a head's query, key or value input, an MLP, the logits); its exact effect is what
``mt.path_patch(sender, receiver)`` measures, and :mod:`mitest.engine.edge_attributing` estimates
every edge's at once (EAP, EAP-IG). :meth:`EdgeAttribution.circuit` turns the top edges into an
``mt.Hypothesis``; :meth:`EdgeAttribution.verify` path-patches the top edges and a sample of the rest.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mitest.claims.effect import Effect
from mitest.claims.verdict import Verdict
from mitest.engine.edge_attributing import edge_scores
from mitest.engine.effects import claim_identity
from mitest.engine.measure import checked_inputs, measure
from mitest.engine.runner import Engine
from mitest.errors import MitestError
from mitest.model.model import Model
from mitest.model.residual import EMBED, check_supported
from mitest.spec.hypothesis import OUTPUT, Hypothesis
from mitest.spec.interventions import path_patch
from mitest.spec.metrics import Metric, as_metric
from mitest.spec.prompts import Prompts
from mitest.spec.sites import Site, heads
from mitest.sweeps.agreement import RankAgreement, checked_names
from mitest.sweeps.cells import position_of
from mitest.sweeps.edges import RECEIVE_ALL, GraphEdge, graph_edges, label
from mitest.sweeps.sweep import t_interval

METHODS = ("eap", "eap-ig")
DEFAULT_STEPS = 16  # EAP-IG points when ``steps`` is not given


def attribute_edges(
    model: Model | Any,
    prompts: Prompts,
    metric: object,
    *,
    senders: object = None,
    receivers: object = RECEIVE_ALL,
    method: str = "eap",
    steps: int | None = None,
    batch_size: int = 32,
) -> EdgeAttribution:
    """Estimate, for every edge from ``senders`` (default every head, ``mt.heads("*")``; MLPs and
    ``"hook_embed"`` may be added) to ``receivers`` (``"all"``: every head's q, k and v, every MLP and
    the logits; or a list of those), the change of ``metric`` that
    ``mt.path_patch(sender, receiver)`` from the corrupted twins would measure.

    ``method="eap"``: the sender's change of output times the metric's gradient at the receiver's input
    at the clean run (one forward and backward pass for every edge). ``method="eap-ig"``: that gradient
    averaged over ``steps`` points (default 16) of the line from the clean to the corrupted embeddings.
    """
    model = checked_inputs(model, prompts, batch_size)
    check_supported(model, "mt.attribute_edges")
    metric = as_metric(metric)
    steps = _steps(method, steps)
    edges = graph_edges(model, heads("*") if senders is None else senders, receivers)
    engine = Engine(model, batch_size)
    pairs = [(edge.sender, edge.reader) for edge in edges]
    scores = edge_scores(engine, prompts, pairs, metric, method=method, steps=steps)
    described = _described(method, steps, [edge.name for edge in edges])
    identity = claim_identity(model.revision_at(engine.version), prompts, described, metric)
    return EdgeAttribution(tuple(edges), scores, method, steps, metric, model, prompts, batch_size, identity)


def _steps(method: str, steps: int | None) -> int:
    if method not in METHODS:
        raise MitestError(f"method must be 'eap' or 'eap-ig', got {method!r}")
    if method == "eap":
        if steps not in (None, 1):
            raise MitestError(
                f"method='eap' takes the gradient at the clean run only; drop steps={steps!r} or use method='eap-ig'"
            )
        return 1
    steps = DEFAULT_STEPS if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise MitestError(f"steps must be a positive int, got {steps!r}")
    return steps


@dataclass(frozen=True, eq=False)
class EdgeAttribution:
    """Per-edge, per-prompt estimates. ``edges["0.0 -> 1.2.k"]`` is an edge's per-prompt values."""

    edges: tuple[GraphEdge, ...]
    scores: np.ndarray  # [edges, prompts]
    method: str
    steps: int
    metric: Metric
    model: Model
    prompts: Prompts
    batch_size: int
    identity: dict[str, Any]

    def __len__(self) -> int:
        return len(self.edges)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.scores[self._index(name)]

    @property
    def names(self) -> list[str]:
        """The edge names (``"0.0 -> 1.2.k"``), senders in forward order."""
        return [edge.name for edge in self.edges]

    def frame(self, level: float = 0.95) -> pd.DataFrame:
        """One row per edge: sender, receiver, mean estimate and its t interval at ``level``."""
        rows = []
        for edge, values in zip(self.edges, self.scores, strict=True):
            low, high = t_interval(values, self.prompts.groups, level)
            rows.append(
                {
                    "edge": edge.name,
                    "sender": label(edge.sender),
                    "receiver": label(edge.receiver),
                    "estimate": float(values.mean()),
                    "low": low,
                    "high": high,
                    "n": len(values),
                }
            )
        return pd.DataFrame(rows)

    def ranking(self) -> list[str]:
        """Edge names by the size of their mean estimate, largest first (ties in edge order)."""
        size = np.abs(self.scores.mean(1))
        return [self.names[i] for i in np.argsort(-size, kind="stable")]

    def circuit(self, top_k: int | None = None, threshold: float | None = None) -> Hypothesis:
        """The kept edges (the ``top_k`` of :meth:`ranking`, or those whose mean estimate is at least
        ``threshold`` in size) and their endpoints as an ``mt.Hypothesis``, for ``mt.scrub`` or
        ``mt.circuit``. Kept edges into a component that no kept path joins to the logits are left out,
        since the hypothesis would say nothing about them. Nodes are named ``head_1_2``, ``mlp_1``,
        ``embed``; the logits are the root ``"output"``."""
        kept = [self.edges[self.names.index(name)] for name in self._kept(top_k, threshold)]
        reaching = _reaching_output(kept)
        if not reaching:
            raise MitestError(
                f"none of the {len(kept)} kept edges lies on a path to the logits, so they make no circuit; "
                "keep more edges (a larger top_k or a lower threshold)"
            )
        nodes: dict[str, Site] = {}
        pairs = []
        for edge in reaching:
            parent = _node(edge.sender)
            nodes[parent] = edge.sender
            if edge.receiver.name == "logits":
                pairs.append((parent, OUTPUT))
                continue
            child = _node(edge.receiver)
            nodes[child] = _writer(edge.receiver)
            read = edge.receiver.name.rsplit("hook_", 1)[-1]
            pairs.append((parent, f"{child}.{read}" if read in ("q", "k", "v") else child))
        return Hypothesis(nodes=nodes, edges=pairs)

    def verify(self, top_k: int = 5, *, sample: int | None = None, seed: int = 0) -> EdgeAgreement:
        """Path-patch exactly (one ``mt.measure`` each) the ``top_k`` edges of :meth:`ranking` and ``sample``
        edges drawn at random (``seed``) from the rest (default: all of the rest), and compare."""
        checked = set(checked_names(self.ranking(), top_k, sample, seed, unit="edge"))
        effects = {
            edge.name: measure(
                self.model,
                self.prompts,
                path_patch(edge.sender, edge.receiver),
                metric=self.metric,
                batch_size=self.batch_size,
            )
            for edge in self.edges
            if edge.name in checked
        }
        return EdgeAgreement(self, top_k, effects)

    def expect_agrees_with_patching(
        self,
        top_k: int = 5,
        *,
        rank_correlation_at_least: float = 0.9,
        sample: int | None = None,
        seed: int = 0,
        alpha: float | None = None,
    ) -> Verdict:
        """Claim: the top ``top_k`` edges by estimate are exact path patching's top ``top_k`` (among the
        checked edges), and Spearman's rank correlation of their mean effects is at least the bound
        (decided as :meth:`mitest.Attribution.expect_agrees_with_patching` is)."""
        __tracebackhide__ = True
        agreement = self.verify(top_k, sample=sample, seed=seed)
        return agreement.expect_agrees(rank_correlation_at_least=rank_correlation_at_least, alpha=alpha)

    def _kept(self, top_k: int | None, threshold: float | None) -> list[str]:
        if (top_k is None) == (threshold is None):
            raise MitestError("give exactly one of top_k (how many edges) and threshold (the least |mean estimate|)")
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= len(self):
                raise MitestError(f"top_k must be an int from 1 to {len(self)} (the edge count), got {top_k!r}")
            return self.ranking()[:top_k]
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold >= 0:
            raise MitestError(f"threshold must be a number >= 0 (a least |mean estimate|), got {threshold!r}")
        if not math.isfinite(threshold):
            raise MitestError(f"threshold must be finite, got {threshold!r}")
        return [name for name in self.ranking() if abs(self[name].mean()) >= threshold]

    def _index(self, name: str) -> int:
        return position_of(name, self.names, "the edge attribution has no edge")


@dataclass(frozen=True, eq=False)
class EdgeAgreement(RankAgreement):
    """An edge attribution next to exact path patching of some of its edges (``exact``: name -> Effect);
    :class:`~mitest.sweeps.agreement.RankAgreement` gives ``rank_correlation``, ``top``, ``frame`` and
    ``expect_agrees``."""

    unit = "edge"
    attribution: EdgeAttribution
    top_k: int
    exact: dict[str, Effect]

    @property
    def estimator(self) -> EdgeAttribution:
        return self.attribution

    @property
    def names(self) -> list[str]:
        """The checked edges, in edge order."""
        return list(self.exact)

    @property
    def estimates(self) -> np.ndarray:
        """``[checked edges, prompts]`` estimates."""
        return np.stack([self.attribution[name] for name in self.names])

    @property
    def changes(self) -> np.ndarray:
        """``[checked edges, prompts]`` exact changes: path-patched minus clean metric."""
        return np.stack([effect.delta for effect in self.exact.values()])

    @property
    def effects(self) -> list[Effect]:
        return list(self.exact.values())

    @property
    def intervention(self) -> dict[str, Any]:
        return _described(self.attribution.method, self.attribution.steps, self.attribution.names)


def _described(method: str, steps: int, names: list[str]) -> dict[str, Any]:
    """An edge attribution as the plain data a claim's record and identity keep."""
    return {"type": "EdgeAttribution", "method": method, "steps": steps, "edges": names}


def _reaching_output(edges: list[GraphEdge]) -> list[GraphEdge]:
    """The edges on some path (of these edges) to the logits."""
    reached = {"logits"}
    kept: list[GraphEdge] = []
    changed = True
    while changed:
        changed = False
        for edge in edges:
            if edge not in kept and label(_writer(edge.receiver)) in reached:
                kept.append(edge)
                reached.add(label(edge.sender))
                changed = True
    return [edge for edge in edges if edge in kept]


def _writer(receiver: Site) -> Site:
    """The component a receiver is an input of (a head input's head; an MLP and the logits as they are)."""
    if ".attn.hook_" in receiver.name:
        return Site(receiver.name.rsplit(".", 1)[0] + ".hook_z", receiver.index)
    return receiver


def _node(site: Site) -> str:
    """A hypothesis node name for a component: ``head_1_2``, ``mlp_1`` or ``embed``."""
    if site.name == EMBED:
        return "embed"
    name = label(_writer(site))
    return "mlp_" + name.split()[1] if name.startswith("mlp ") else "head_" + name.replace(".", "_")
