"""Gradient attribution of a metric to edges of the residual-stream graph (EAP and EAP-IG).

An edge runs from a *sender* (the embedding, one head, an MLP: a writer of the residual stream) to
a *reader* (one head's query, key or value input, an MLP's input, or the final residual that the
unembedding reads). Its estimate on one prompt is ``delta_s . g_r``: the sender's change of output
in the residual stream (corrupted minus clean; a head's is its ``hook_z`` change through its slice
of the output projection) times the metric's gradient with respect to the reader's own copy of the
residual stream (Syed, Rager & Conmy 2023):

- ``"eap"``: ``g_r`` at the clean run, one forward and backward pass per batch for every edge;
- ``"eap-ig"``: ``g_r`` averaged over ``steps`` midpoints of the straight line from the clean to the
  corrupted token embeddings (Hanna et al. 2024), one pass per step and batch.

A head's input gradient is its share alone: the gradient at its ``hook_q`` (``k``, ``v``) entries,
carried back through the projection and LayerNorm to the residual entering the layer, so the other
heads' and inputs' paths do not mix in. Parameters are never differentiated (see
:func:`~mitest.engine.attributing.differentiable`) and hooks live in one :class:`HookSet`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np
import torch

from mitest.engine.attributing import (
    batch_rows,
    check_precision,
    differentiable,
    differentiable_sum,
    eager_for,
    shifted,
)
from mitest.engine.compile import corrupted_of
from mitest.engine.hooks import HookSet
from mitest.engine.runner import Engine, check_fired
from mitest.errors import InterventionError
from mitest.model.model import Model
from mitest.model.residual import EMBED
from mitest.spec.metrics import Metric
from mitest.spec.prompts import Prompts
from mitest.spec.sites import Site

METHODS = ("eap", "eap-ig")
_HEAD_INPUT = re.compile(r"blocks\.(\d+)\.attn\.hook_[qkv]")

Tap = tuple[torch.Tensor, torch.Tensor]  # (zero leaf, activation + leaf) of one hook point in one pass


def edge_scores(
    engine: Engine,
    prompts: Prompts,
    edges: Sequence[tuple[Site, Site]],
    metric: Metric,
    *,
    method: str,
    steps: int,
) -> np.ndarray:
    """``[edges, prompts]``: each (sender writer site, reader site) edge's estimated effect per prompt."""
    if method not in METHODS:
        raise InterventionError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    model = engine.model
    check_precision(model)
    corrupted = corrupted_of(prompts, "edge attribution compares each sender's clean and corrupted outputs")
    written = list(dict.fromkeys([site.name for site, _ in edges] + ([EMBED] if method == "eap-ig" else [])))
    points = {name: model.resolve(name) for name in written}
    clean = dict(zip(written, engine.capture_all(prompts, list(points.values())), strict=True))
    corrupt = dict(zip(written, engine.capture_all(corrupted, list(points.values())), strict=True))
    references = engine.metric_values(prompts, metric)[1] if metric.needs_reference else None
    senders = list(dict.fromkeys(site for site, _ in edges))
    readers = list(dict.fromkeys(site for _, site in edges))
    alphas = [0.0] if method == "eap" else [(k + 0.5) / steps for k in range(steps)]
    scores = np.zeros((len(edges), len(prompts)))
    for number, batch in enumerate(prompts.batches(engine.batch_size)):
        reference = references[number] if references is not None else None
        deltas = {
            name: batch_rows(corrupt[name], batch, point) - batch_rows(clean[name], batch, point)
            for name, point in points.items()
        }
        outputs = {site: _residual_change(model, site, deltas[site.name]) for site in senders}
        slopes: dict[Site, torch.Tensor] = {}
        for alpha in alphas:
            shift = alpha * deltas[EMBED] if alpha else None
            for site, grad in _reader_gradients(engine, batch, readers, metric, reference, shift).items():
                slopes[site] = slopes.get(site, 0) + grad.float() / len(alphas)
        rows = batch.index.numpy()
        for i, (sender, reader) in enumerate(edges):
            product = outputs[sender].float() * slopes[reader]
            scores[i, rows] = product.flatten(1).sum(1).detach().cpu().double().numpy()
    return scores


def _residual_change(model: Model, sender: Site, delta: torch.Tensor) -> torch.Tensor:
    """What a change ``delta`` of a writer site adds to the residual stream: itself for the embedding and
    an MLP, and for a head its ``hook_z`` change through the output projection (the head's slice of it)."""
    if not sender.name.endswith("attn.hook_z"):
        return delta
    assert sender.index is not None and len(sender.index) == 1, "edge senders are single heads"
    alone = torch.zeros_like(delta)
    alone[..., sender.index[0], :] = delta[..., sender.index[0], :]
    projection = model.resolve(sender.name).module  # hook_z is the output projection's input
    flat = alone.flatten(-2)
    with torch.no_grad():
        return projection(flat) - projection(torch.zeros_like(flat))


def _reader_gradients(
    engine: Engine,
    batch: Prompts,
    readers: list[Site],
    metric: Metric,
    reference: torch.Tensor | None,
    embed_shift: torch.Tensor | None,
) -> dict[Site, torch.Tensor]:
    """``[rows, pos, d_model]`` per reader: the metric's gradient (summed over the batch's prompts) with
    respect to the reader's copy of the residual stream, in one forward pass (with the token embedding
    moved by ``embed_shift``) and its backward passes."""
    model = engine.model
    hooks = HookSet(model.hf_model)
    taps: dict[str, list[Tap]] = {}
    for name in dict.fromkeys(name for site in readers for name in _tapped(site)):
        taps[name] = []
        hooks.add(model.resolve(name), functools.partial(_tap, taps[name]))
    if embed_shift is not None:
        hooks.add(model.resolve(EMBED), functools.partial(shifted, embed_shift))
    device = model.device
    with differentiable(model), hooks, eager_for(engine):
        logits = model.forward(batch.tokens.to(device), batch.attention_mask.to(device))
        total = differentiable_sum(metric(logits, batch, reference), metric)
        names = list(taps)
        leaves = [taps[name][0][0] for name in names]
        grads = torch.autograd.grad(total, leaves, retain_graph=True, allow_unused=True)
        first: dict[str, torch.Tensor | None] = dict(zip(names, grads, strict=True))
        found = {site: _reader_gradient(site, taps, first) for site in readers}
    check_fired(hooks.stats, 1)
    return found


def _tapped(reader: Site) -> list[str]:
    """The hook points one reader's gradient needs: its own, and for a head input the layer's input."""
    head_input = _HEAD_INPUT.fullmatch(reader.name)
    if head_input is None:
        return [reader.name]
    return [reader.name, f"blocks.{head_input.group(1)}.hook_resid_pre"]


def _reader_gradient(site: Site, taps: dict[str, list[Tap]], first: dict[str, torch.Tensor | None]) -> torch.Tensor:
    head_input = _HEAD_INPUT.fullmatch(site.name)
    if head_input is None:
        grad = first[site.name]
        return torch.zeros_like(taps[site.name][0][0]) if grad is None else grad.detach()
    assert site.index is not None and len(site.index) == 1, "edge readers are single heads' inputs"
    layer_input = taps[f"blocks.{head_input.group(1)}.hook_resid_pre"][0][0]
    grad = first[site.name]
    if grad is None:
        return torch.zeros_like(layer_input)
    alone = torch.zeros_like(grad)
    alone[..., site.index[0], :] = grad[..., site.index[0], :]
    (back,) = torch.autograd.grad(
        taps[site.name][0][1], layer_input, grad_outputs=alone, retain_graph=True, allow_unused=True
    )
    return torch.zeros_like(layer_input) if back is None else back.detach()


def _tap(store: list[Tap], view: torch.Tensor) -> torch.Tensor:
    """A hook edit adding a zero leaf, recorded with the result, so both can be differentiated."""
    leaf = torch.zeros_like(view, requires_grad=True)
    out = view + leaf
    store.append((leaf, out))
    return out
