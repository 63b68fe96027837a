"""Measuring: run (model, prompts, intervention, metric) and return an :class:`~mitest.Effect`.

The intervention is compiled to edits (:mod:`mitest.engine.compile`) and run by the engine
(:mod:`mitest.engine.runner`). Per (model, prompts) the clean metric values, captured source
activations and means are computed once and kept in the model's :class:`~mitest.model.cache.RunCache`;
only the sites an intervention names are captured.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from mitest.claims.effect import Effect
from mitest.engine.combining import sites_of
from mitest.engine.compile import compile_edits, input_prompts
from mitest.engine.edits import check_index
from mitest.engine.effects import effect_of
from mitest.engine.hooks import HookStats
from mitest.engine.runner import Engine, check_fired
from mitest.engine.scrubbing import scrub_effect
from mitest.errors import InterventionError, MitestError, NoOpInterventionWarning, PromptsError, SiteError
from mitest.model.model import Model
from mitest.spec.interventions import Intervention, PathPatch, Scrub
from mitest.spec.metrics import as_metric
from mitest.spec.positions import ALL, Positions
from mitest.spec.prompts import Prompts
from mitest.spec.sites import as_sites

# interventions run whole rather than compiled to edits: spec type -> runner
WHOLE_RUNS: dict[type[Intervention], Callable[..., Effect]] = {Scrub: scrub_effect}


def measure(
    model: Model,
    prompts: Prompts,
    intervention: Intervention,
    metric: object,
    *,
    batch_size: int = 32,
    strict: bool = False,
) -> Effect:
    """Run ``intervention`` on ``prompts`` and return per-prompt clean and intervened ``metric`` values.

    Args:
        model: an :class:`mitest.Model` (a bare transformers model is wrapped).
        prompts: the prompt set; its ``corrupted`` twins are the source of ``patch``.
        intervention: an ablation, patch, steer or combination of them.
        metric: an ``mt.metrics`` metric or a callable ``(logits, prompts) -> tensor[n_prompts]``.
        batch_size: prompts per forward pass; results do not depend on it.
        strict: raise instead of warning when an intervention changed no activation.

    Raises:
        HookNotFiredError: a hook was never reached by the forward pass.
    """
    model = checked_inputs(model, prompts, batch_size)
    if not isinstance(intervention, Intervention):
        raise InterventionError(
            f"intervention must be mt.ablate/patch/steer/path_patch/scrub/combine, got {type(intervention).__name__}"
        )
    metric = as_metric(metric)
    positions = getattr(metric, "positions", None)
    if isinstance(positions, Positions):
        positions.check_count(len(prompts))
    first = intervention.parts()[0]
    whole = WHOLE_RUNS.get(type(first))
    if whole is not None:
        return whole(model, prompts, first, metric, batch_size)
    engine = Engine(model, batch_size, eager=_reads_patterns(model, intervention))
    edits = compile_edits(intervention, engine, prompts)
    run_prompts = input_prompts(intervention, prompts)

    clean, references, clean_top1 = engine.metric_values(prompts, metric)
    corrupted = None
    if prompts.corrupted is not None:
        corrupted = engine.metric_values(prompts.corrupted, metric, reference_from=prompts)[0]
    intervened, top1, stats, points = engine.intervened(run_prompts, edits, metric, references)
    _check_hooks(stats, points, engine.passes(run_prompts), intervention, strict)
    return effect_of(engine, prompts, intervention, metric, (clean, intervened, corrupted), stats, top1 != clean_top1)


def _reads_patterns(model: Model, intervention: Intervention) -> bool:
    """Whether any edited site is an attention pattern (those need the eager attention kernel); a path
    patch edits only residual-stream writers and readers, never a pattern."""
    parts = [part for part in intervention.parts() if not isinstance(part, PathPatch)]
    return any(model.resolve(site.name).kind == "pattern" for part in parts for site in sites_of(part))


def _check_hooks(
    stats: list[HookStats], points: list[HookStats], passes: int, intervention: Intervention, strict: bool
) -> None:
    """Every hook fired; warn (``strict``: raise) when an edit, or all edits of a hook point together,
    changed nothing."""
    check_fired(points + stats, passes)
    unchanged = sorted({s.site for s in stats if not s.changed})
    shared = {s.site for s in stats if sum(other.site == s.site for other in stats) > 1}
    cancelled = sorted({s.site for s in points if not s.changed and s.site in shared} - set(unchanged))
    if unchanged:
        _no_op(
            f"{type(intervention).__name__} left {', '.join(unchanged)} unchanged on every prompt "
            "(e.g. zero-ablating an activation that is already zero, or patching identical runs); "
            "its effect is zero by construction",
            strict,
        )
    if cancelled:
        _no_op(
            f"the edits of {type(intervention).__name__} on {', '.join(cancelled)} cancel: each changes it, but "
            "together they leave it unchanged on every prompt (e.g. steer(d, 3) + steer(d, -3)); "
            "their effect is zero by construction",
            strict,
        )


def _no_op(message: str, strict: bool) -> None:
    if strict:
        raise InterventionError(message)
    warnings.warn(NoOpInterventionWarning(message), stacklevel=4)


def activations(model: Model | nn.Module, prompts: Prompts, site: Any, *, batch_size: int = 32) -> torch.Tensor:
    """A site's clean activations on ``prompts``, e.g. to build a direction to steer along.

    Returns a float32 CPU tensor ``[n_prompts, max_len, ...]`` (zero at padding), or ``[n_prompts, ...]``
    when the site selects one position per prompt (``.at("last")`` or an int). ``site`` is one site:
    a name, ``mt.site(...)``, or a head or neuron selection such as ``mt.heads("0.1")`` or
    ``mt.neurons(0, 3, 7)``, which keeps only those components. The capture is cached on the model
    with its other runs, so interventions on the same site reuse it.
    """
    model = checked_inputs(model, prompts, batch_size)
    sites = as_sites(site)
    if len(sites) != 1:
        raise SiteError(f"activations() reads one site at a time, got {len(sites)}: {', '.join(map(str, sites))}")
    site = sites[0]
    if site.direction is not None:
        raise SiteError(f"activations() reads whole sites; drop the direction from {site}")
    site.positions.check_count(len(prompts))
    point = model.resolve(site.name)
    check_index(site, point)
    engine = Engine(model, batch_size, eager=point.kind == "pattern")
    values = engine.capture(prompts, point).detach().float().cpu().clone()
    values[torch.arange(values.shape[1])[None, :] >= prompts.lengths[:, None]] = 0.0  # padding
    if site.index is not None:
        values = values[:, :, list(site.index)]
    if site.positions == ALL:
        return values
    chosen = site.positions.mask(prompts.lengths, values.shape[1], prompts.index)
    counts = chosen.sum(1)
    if not bool((counts == 1).all()):
        raise SiteError(
            f"activations() at positions {site.positions} selects {int(counts.min())} to {int(counts.max())} "
            "positions per prompt; use one position per prompt (e.g. 'last') or all positions"
        )
    return values[chosen]


def checked_inputs(model: Model | nn.Module, prompts: Prompts, batch_size: int) -> Model:
    """The model as an ``mt.Model``, after checking the inputs every run shares."""
    if not isinstance(model, (Model, nn.Module)):
        raise MitestError(
            f"model must be an mt.Model or a transformers model (a torch nn.Module), got {type(model).__name__}; "
            "load one with mt.Model.load(dir) or mt.Model.from_hf(model)"
        )
    model = model if isinstance(model, Model) else Model.from_hf(model)
    if not isinstance(prompts, Prompts):
        raise PromptsError(f"prompts must be mt.Prompts, got {type(prompts).__name__}")
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, (bool, np.bool_)) or batch_size < 1:
        raise PromptsError(f"batch_size must be a positive int, got {batch_size!r}")
    prompts.check_vocab(model.vocab_size)
    return model
