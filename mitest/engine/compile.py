"""The compile table: each intervention spec type maps to a compiler that turns it into edits.

A compiler reads the spec and fetches what its edits need (means, captured sources, donors) through
the engine before the intervened pass. Adding an intervention is a spec in
:mod:`mitest.spec.interventions`, a compiler here (or in its own module) and one line in
:data:`COMPILERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mitest.engine.combining import combined_parts
from mitest.engine.edits import Edit, ValueFn, check_index, fit, take_rows
from mitest.engine.paths import path_edits
from mitest.engine.runner import Engine
from mitest.errors import InterventionError
from mitest.model.layouts import ResolvedSite
from mitest.spec.interventions import Ablate, Intervention, Patch, PathPatch, Steer
from mitest.spec.prompts import Prompts
from mitest.spec.sites import Site


@dataclass(frozen=True)
class Run:
    """What a compiler sees: the engine, the measured prompts, and the prompts the pass runs on."""

    engine: Engine
    prompts: Prompts
    inputs: Prompts


def ablation(part: Ablate, run: Run) -> list[Edit]:
    """Zero, mean or resample ablation of each site."""
    return [
        Edit(site, point, _ablated(part, site, point, run), project=site.direction is not None)
        for site, point in resolve_sites(part.sites, run)
    ]


def patching(part: Patch, run: Run) -> list[Edit]:
    """Each site takes its activation on the source prompts."""
    source = patch_source(part, run.prompts)
    source.check_vocab(run.engine.model.vocab_size)
    edits = []
    for site, point in resolve_sites(part.sites, run):
        acts = run.engine.capture(source, point)
        edits.append(Edit(site, point, _rows_of(acts, point), project=site.direction is not None))
    return edits


def steering(part: Steer, run: Run) -> list[Edit]:
    """Adds ``coef`` times the direction to the site."""
    site, point = resolve_sites((part.direction,), run)[0]
    step = torch.tensor(site.direction, dtype=torch.float64) * part.coef
    return [Edit(site, point, lambda view, batch: view + fit(step, view, site).to(dtype=view.dtype), adds=True)]


def path_patching(part: PathPatch, run: Run) -> list[Edit]:
    """Each receiver's inputs take their value when only the sender's direct paths carry the source."""
    for site in (*part.sender, *part.receivers):
        site.positions.check_count(len(run.prompts))
    return path_edits(run.engine, part, base=input_prompts(part, run.prompts), source=patch_source(part, run.prompts))


Compiler = Callable[[Any, Run], list[Edit]]

COMPILERS: dict[type[Intervention], Compiler] = {
    Ablate: ablation,
    Patch: patching,
    Steer: steering,
    PathPatch: path_patching,
}


def compile_edits(intervention: Intervention, engine: Engine, prompts: Prompts) -> list[Edit]:
    """Every edit of ``intervention``: each part of a combination compiled in turn, after exact repeats
    are dropped and parts that would overwrite each other refused (:mod:`mitest.engine.combining`)."""
    run = Run(engine, prompts, input_prompts(intervention, prompts))
    edits = []
    for part in combined_parts(intervention, engine.model, run.inputs):
        compiler = COMPILERS.get(type(part))
        if compiler is None:
            raise InterventionError(f"{type(part).__name__} is not a single edit; mt.measure runs it whole")
        edits.extend(compiler(part, run))
    return edits


def input_prompts(intervention: Intervention, prompts: Prompts) -> Prompts:
    """The prompts the intervened pass runs on: the corrupted twins for ``patch(source='clean')``."""
    if intervention.runs_on == "corrupted":
        return corrupted_of(prompts, "patch(source='clean') runs the corrupted prompts")
    return prompts


def corrupted_of(prompts: Prompts, needed_by: str) -> Prompts:
    """The corrupted twins, or an error naming what needed them."""
    if prompts.corrupted is None:
        raise InterventionError(f"{needed_by}; build Prompts(..., corrupted=...) with token-aligned counterfactuals")
    return prompts.corrupted


def patch_source(part: Patch | PathPatch, prompts: Prompts) -> Prompts:
    """The prompts a patch takes its values from, checked to be token-aligned with ``prompts``."""
    if part.source == "corrupted":
        return corrupted_of(prompts, "patch(source='corrupted') needs the corrupted prompts")
    source = part.source
    if not isinstance(source, Prompts):  # "clean"
        return prompts
    if len(source) != len(prompts) or not torch.equal(source.lengths, prompts.lengths):
        raise InterventionError(
            "patch source prompts must be token-aligned with the measured prompts: same number of prompts "
            f"and same length per prompt (got {len(source)} prompts for {len(prompts)})"
        )
    return source


def resolve_sites(sites: Iterable[Site], run: Run) -> list[tuple[Site, ResolvedSite]]:
    """Each site with its hook point, after checking its positions and indices."""
    resolved = []
    for site in sites:
        site.positions.check_count(len(run.prompts))
        point = run.engine.model.resolve(site.name)
        check_index(site, point)
        resolved.append((site, point))
    return resolved


def _rows_of(acts: torch.Tensor, point: ResolvedSite, rows: torch.Tensor | None = None) -> ValueFn:
    """Each prompt's row of ``acts`` (or row ``rows[i]`` for prompt ``i``)."""
    if rows is None:
        return lambda view, batch: take_rows(acts, batch.index, view, point)
    return lambda view, batch: take_rows(acts, rows[batch.index], view, point)


def prefetch(engine: Engine, prompts: Prompts, interventions: Iterable[Intervention]) -> None:
    """Compute every capture and mean that many one-cell interventions read, in one pass per prompt set
    (compiling each cell alone would run one pass per site); the results land in the model's cache,
    where compiling finds them."""
    reads: dict[tuple[str, str, bool], tuple[Prompts, dict[str, ResolvedSite]]] = {}

    def add(kind: str, source: Prompts, sites: Iterable[Site], per_position: bool = False) -> None:
        source.check_vocab(engine.model.vocab_size)  # before any pass runs on it, as compiling would
        points = reads.setdefault((kind, source.fingerprint, per_position), (source, {}))[1]
        for site in sites:
            points[site.name] = engine.model.resolve(site.name)

    for intervention in interventions:
        if isinstance(intervention, Patch):
            add("capture", patch_source(intervention, prompts), intervention.sites)
        elif isinstance(intervention, Ablate) and intervention.method == "mean":
            add("mean", _mean_reference(intervention, prompts), intervention.sites, intervention.per_position)
        elif isinstance(intervention, Ablate) and intervention.method == "resample":
            add("capture", _resample_reference(intervention, prompts), intervention.sites)
    for (kind, _, per_position), (source, points) in reads.items():
        if kind == "capture":
            engine.capture_all(source, list(points.values()))
        else:
            engine.mean_all(source, list(points.values()), per_position)


def _mean_reference(part: Ablate, prompts: Prompts) -> Prompts:
    return part.reference if isinstance(part.reference, Prompts) else prompts  # a str is resample's


def _ablated(part: Ablate, site: Site, point: ResolvedSite, run: Run) -> ValueFn:
    engine = run.engine
    if part.method == "zero":
        return lambda view, batch: torch.zeros_like(view)
    if part.method == "mean":
        reference = _mean_reference(part, run.prompts)
        reference.check_vocab(engine.model.vocab_size)
        mean = engine.mean(reference, point, part.per_position)
        return _mean_value(mean, part.per_position, run.inputs, point)
    donors, reference = _donors(part, run.prompts)
    reference.check_vocab(engine.model.vocab_size)
    return _rows_of(engine.capture(reference, point), point, donors)


def _mean_value(mean: torch.Tensor, per_position: bool, run: Prompts, point: ResolvedSite) -> ValueFn:
    if not per_position:
        if point.kind == "pattern":
            return lambda view, batch: mean[..., : view.shape[-1]].to(view.device).expand_as(view)
        return lambda view, batch: mean.to(view.device).expand_as(view)
    if run.tokens.shape[1] > mean.shape[0]:
        raise InterventionError(
            f"per-position mean ablation of {point.name}: the reference prompts are at most {mean.shape[0]} "
            f"tokens but measured prompts reach {run.tokens.shape[1]}; "
            "use longer reference prompts or per_position=False"
        )

    def value(view, batch):
        m = mean[: view.shape[1]]
        if point.kind == "pattern":
            m = m[..., : view.shape[1]]
        return m.to(view.device).unsqueeze(0).expand_as(view)

    return value


def _resample_reference(part: Ablate, prompts: Prompts) -> Prompts:
    """The prompts whose activations a resample ablation hands out."""
    if part.reference == "corrupted":
        return corrupted_of(prompts, "resample from reference='corrupted'")
    return part.reference if isinstance(part.reference, Prompts) else prompts


def _donors(part: Ablate, prompts: Prompts) -> tuple[torch.Tensor, Prompts]:
    """For each prompt, the row of the reference prompt whose activation replaces its own."""
    reference = _resample_reference(part, prompts)
    if part.reference == "corrupted":
        return torch.arange(len(prompts)), reference
    rng = np.random.default_rng(part.seed)
    ref_lengths = reference.lengths.numpy()
    donors = np.empty(len(prompts), dtype=np.int64)
    for i, length in enumerate(prompts.lengths.numpy()):
        same_length = np.flatnonzero(ref_lengths == length)
        # A donor with the same tokens would hand the prompt its own activation: not an ablation.
        own = prompts.tokens[i, :length]
        candidates = [c for c in same_length if not torch.equal(reference.tokens[c, :length], own)]
        if len(candidates) == 0:
            raise InterventionError(
                f"resample ablation: prompt {i} has {length} tokens and no reference prompt with other tokens "
                "has that length; resampling copies position-aligned activations, so add prompts of that length"
            )
        donors[i] = rng.choice(candidates)
    return torch.from_numpy(donors), reference
