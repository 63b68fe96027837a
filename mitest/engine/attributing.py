"""Gradient attribution of a metric to many one-cell interventions at once (AtP and integrated gradients).

Each cell's intervention is compiled to its edit exactly as ``mt.measure`` would run it, and the edit
applied to the clean activation gives the cell's change ``delta`` (corrupted minus clean for a patch).
The estimate of the cell's effect on one prompt is ``delta . g``:

- ``"atp"``: ``g`` is the gradient of the metric at the clean run (one forward and backward pass per
  batch for every cell at once; Nanda 2023, Kramar et al. 2024);
- ``"ig"``: ``g`` is the gradient averaged over ``steps`` points (midpoints) of the straight line from
  the clean activation to the intervened one. The cells of one hook point move together and the rest
  of the model is computed as usual, so a cell's estimate keeps its effect through later layers, and
  the estimates of a hook point's cells sum to the exact effect of intervening on all of them jointly
  (completeness, up to the rule's error); one forward and backward pass per hook point, step and batch.

Gradients are taken with respect to an offset added at each hook point, never the weights: during
the passes every parameter has ``requires_grad`` off (restored afterwards), so no ``.grad`` is
written, and hooks are installed and removed by :class:`~mitest.engine.hooks.HookSet`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from mitest.engine.compile import compile_edits, input_prompts, prefetch
from mitest.engine.edits import Edit, apply
from mitest.engine.hooks import HookSet, eager_attention
from mitest.engine.runner import Engine, check_fired
from mitest.engine.sweeping import cells_per_pass
from mitest.errors import InterventionError, MetricError, ModelError
from mitest.model.layouts import ResolvedSite
from mitest.model.model import Model
from mitest.spec.interventions import Intervention
from mitest.spec.metrics import Metric
from mitest.spec.prompts import Prompts

METHODS = ("atp", "ig")
_HALF = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class _Cell:
    """One cell's edit and the hook point it acts on."""

    edit: Edit
    point: str


def attribution_scores(
    engine: Engine,
    prompts: Prompts,
    interventions: Sequence[Intervention],
    metric: Metric,
    *,
    method: str,
    steps: int,
) -> np.ndarray:
    """``[cells, prompts]``: each single-cell intervention's estimated change of ``metric`` per prompt."""
    if method not in METHODS:
        raise InterventionError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    check_precision(engine.model)
    inputs = {input_prompts(iv, prompts).fingerprint for iv in interventions}
    if len(inputs) != 1:
        raise InterventionError("the cells of one attribution must all run on the same prompts (one patch direction)")
    run_prompts = input_prompts(interventions[0], prompts)
    prefetch(engine, prompts, interventions)
    cells = [_compiled(engine, prompts, iv) for iv in interventions]
    points = {cell.edit.point.name: cell.edit.point for cell in cells}
    if method != "atp":  # AtP reads the clean activations in its own gradient pass
        clean = dict(zip(points, engine.capture_all(run_prompts, list(points.values())), strict=True))
    references = engine.metric_values(prompts, metric)[1] if metric.needs_reference else None
    scores = np.zeros((len(cells), len(run_prompts)))
    for number, batch in enumerate(run_prompts.batches(engine.batch_size)):
        reference = references[number] if references is not None else None
        if method == "atp":
            base: dict[str, torch.Tensor] = {}
            slopes = _gradients(engine, batch, points, None, metric, reference, seen=base)
        else:
            base = {name: batch_rows(clean[name], batch, points[name]) for name in points}
            slopes = {
                name: _mean_slope(engine, batch, points[name], cells, base[name], metric, reference, steps)
                for name in points
            }
        rows = batch.index.numpy()
        for i, cell in enumerate(cells):
            view = base[cell.point]
            delta = apply(cell.edit, view, batch)[0].float() - view.float()
            scores[i, rows] = (delta * slopes[cell.point].float()).flatten(1).sum(1).detach().cpu().double().numpy()
    return scores


def check_precision(model: Model) -> None:
    """Refuse half-precision weights: their gradients are too coarse to rank cells by."""
    dtypes = {p.dtype for p in model.hf_model.parameters() if p.is_floating_point()}
    half = sorted(str(dtype).removeprefix("torch.") for dtype in dtypes & set(_HALF))
    if half:
        raise ModelError(
            f"the model has {', '.join(half)} weights; gradients in half precision are unreliable (rounding "
            "swamps the small products attribution sums), so attribute a float32 copy: "
            "mt.Model.from_hf(copy.deepcopy(hf_model).float()) or mt.Model.load(path, dtype=torch.float32)"
        )


def _compiled(engine: Engine, prompts: Prompts, intervention: Intervention) -> _Cell:
    edits = compile_edits(intervention, engine, prompts)
    if len(edits) != 1:
        raise InterventionError(
            f"an attributed cell compiles to one edit; {type(intervention).__name__} gave {len(edits)}"
        )
    return _Cell(edits[0], edits[0].point.name)


def _mean_slope(
    engine: Engine,
    batch: Prompts,
    point: ResolvedSite,
    cells: list[_Cell],
    base: torch.Tensor,
    metric: Metric,
    reference: torch.Tensor | None,
    steps: int,
) -> torch.Tensor:
    """The metric's gradient at one hook point averaged over the midpoints of the line from the clean
    activation to the one with every cell of that point intervened on together."""
    joint = base
    for cell in cells:
        if cell.point == point.name:
            joint = apply(cell.edit, joint, batch)[0]
    delta = (joint - base).float()
    rows = len(batch)
    alphas = (torch.arange(steps, dtype=torch.float32, device=base.device) + 0.5) / steps
    total = torch.zeros_like(base, dtype=torch.float32)
    for chunk in alphas.split(_copies_per_pass(engine, batch)):
        # one stacked copy of the batch per step: copy j is offset by chunk[j] * delta
        offset = (chunk.view(-1, *[1] * delta.dim()) * delta).flatten(0, 1).to(base.dtype)
        grad = _gradients(engine, batch, {point.name: point}, {point.name: offset}, metric, reference, len(chunk))
        total += grad[point.name].float().unflatten(0, (len(chunk), rows)).sum(0)
    return total / steps


def _copies_per_pass(engine: Engine, batch: Prompts) -> int:
    """How many stacked copies of ``batch`` one gradient pass takes: the sweep's memory rule, with a
    quarter of its share (a backward pass keeps the forward pass's activations)."""
    return max(1, cells_per_pass(engine.model, batch, engine.batch_size, False, None) // 4)


def _gradients(
    engine: Engine,
    batch: Prompts,
    points: dict[str, ResolvedSite],
    offsets: dict[str, torch.Tensor] | None,
    metric: Metric,
    reference: torch.Tensor | None,
    copies: int = 1,
    seen: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The gradient of the metric (summed over the batch's prompts, which do not interact) with respect
    to an offset added at each hook point, in one forward and backward pass over ``copies`` copies of
    the batch stacked along the batch axis (offsets ``[copies * rows, ...]``; None: zero offsets, the
    gradient at the clean run, whose activations at the points then go into ``seen``)."""
    model = engine.model
    hooks = HookSet(model.hf_model)
    if offsets is None:
        leaves: dict[str, torch.Tensor] = {}
        for name, point in points.items():
            hooks.add(_writable(point), functools.partial(_shifted_from_zero, leaves, name, len(batch) * copies))
            if seen is not None:
                hooks.add(point, functools.partial(_remember, seen, name, len(batch) * copies))
    else:
        leaves = {name: offset.detach().requires_grad_(True) for name, offset in offsets.items()}
        for name, leaf in leaves.items():
            hooks.add(_writable(points[name]), functools.partial(shifted, leaf))
    device = model.device
    with differentiable(model), hooks, eager_for(engine):
        tokens, mask = batch.tokens.repeat(copies, 1), batch.attention_mask.repeat(copies, 1)
        logits = model.forward(tokens.to(device), mask.to(device))
        rows = len(batch)
        values = torch.cat([metric(logits[j * rows : (j + 1) * rows], batch, reference) for j in range(copies)])
        grads = torch.autograd.grad(differentiable_sum(values, metric), list(leaves.values()), allow_unused=True)
    check_fired(hooks.stats, 1)
    return {
        name: torch.zeros_like(leaf) if grad is None else grad.detach()
        for (name, leaf), grad in zip(leaves.items(), grads, strict=True)
    }


def differentiable_sum(values: torch.Tensor, metric: Metric) -> torch.Tensor:
    """The metric's per-prompt values summed in float32, refused when they carry no gradient."""
    if not values.requires_grad:
        raise MetricError(
            f"metric {metric.name} is not differentiable in the activations (its values carry no gradient: "
            "an argmax or top-1 accuracy, or a custom metric that detaches or leaves torch); attribute a "
            "smooth metric such as mt.metrics.logit_diff or mt.metrics.loss, or run mt.sweep for exact values"
        )
    return values.float().sum()


def shifted(offset: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
    """A hook edit adding ``offset`` to the activation."""
    return view + offset.to(view.dtype)


def _shifted_from_zero(leaves: dict[str, torch.Tensor], name: str, rows: int, view: torch.Tensor) -> torch.Tensor:
    """Add a zero offset of one row per prompt, also where the site is shared across the batch
    (``[1, pos, d]`` position embeddings), so each prompt gets its own gradient."""
    leaves[name] = torch.zeros((rows, *view.shape[1:]), dtype=view.dtype, device=view.device, requires_grad=True)
    return view + leaves[name]


def _remember(seen: dict[str, torch.Tensor], name: str, rows: int, view: torch.Tensor) -> None:
    seen[name] = view.detach().expand(rows, *view.shape[1:]).clone()


def _writable(point: ResolvedSite) -> ResolvedSite:
    """Where an offset to ``point`` is added: a residual sum (``hook_resid_mid``) is written through the
    attention output, the sum's only changed part, so its offset goes there."""
    if point.kind == "residual_sum":
        return replace(point, kind="output", addend=None)
    return point


@contextlib.contextmanager
def differentiable(model: Model) -> Iterator[None]:
    """A run with gradients: eval mode and the model's run lock (as every run), autograd on, and every
    parameter's ``requires_grad`` off, each flag restored afterwards whatever happens."""
    with model.running(), torch.enable_grad():
        parameters = list(model.hf_model.parameters())
        flags = [p.requires_grad for p in parameters]
        try:
            for parameter in parameters:
                parameter.requires_grad_(False)
            yield
        finally:
            for parameter, flag in zip(parameters, flags, strict=True):
                parameter.requires_grad_(flag)


def eager_for(engine: Engine) -> contextlib.AbstractContextManager:
    """The eager attention kernel when the engine needs it, else nothing."""
    return eager_attention(engine.model.hf_model) if engine.eager else contextlib.nullcontext()


def batch_rows(acts: torch.Tensor, batch: Prompts, point: ResolvedSite) -> torch.Tensor:
    """The batch's rows of a padded capture, cut to the batch's width."""
    width = batch.tokens.shape[1]
    value = acts[batch.index.to(acts.device), :width]
    return value[..., :width] if point.kind == "pattern" else value
