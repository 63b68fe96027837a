"""Execution: run (model, prompts, intervention, metric) and return an :class:`~mitest.Effect`.

This is the only place interventions are executed. Per (model, prompts) the clean metric values,
captured source activations and means are computed once and kept in the model's
:class:`~mitest.cache.RunCache`; only the sites an intervention names are captured.
"""

from __future__ import annotations

import functools
import numbers
import operator
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from . import progress
from .architectures import HookPoint
from .claims import Effect
from .errors import (
    HookNotFiredError,
    InterventionError,
    MetricError,
    MitestError,
    NoOpInterventionWarning,
    PromptsError,
    SiteError,
)
from .hooks import HookSet, HookStats, eager_attention
from .interventions import Ablate, Intervention, Patch, PathPatch, Scrub, Steer
from .metrics import Custom, Metric, as_metric
from .model import Model
from .positions import ALL, Positions
from .prompts import Prompts
from .residual import check_supported, read_stage, reader_sites, write_stage, writers
from .sites import Site, as_sites
from .spec import digest, identity, source_key

# value(view, batch) -> the replacement for the whole view (only selected entries are used)
ValueFn = Callable[[torch.Tensor, Prompts], torch.Tensor]


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
    model = _checked(model, prompts, batch_size)
    if not isinstance(intervention, Intervention):
        raise InterventionError(
            f"intervention must be mt.ablate/patch/steer/path_patch/scrub/combine, got {type(intervention).__name__}"
        )
    metric = as_metric(metric)
    positions = getattr(metric, "positions", None)
    if isinstance(positions, Positions):
        positions.check_count(len(prompts))
    first = intervention.parts()[0]
    if isinstance(first, Scrub):
        from .scrubbing import scrub_effect  # scrubbing builds on this module's engine

        return scrub_effect(model, prompts, first, metric, batch_size)
    engine = Engine(model, batch_size)
    plans = [plan for part in intervention.parts() for plan in _plans(part, model, prompts)]
    engine.eager = any(plan.point.kind == "pattern" for plan in plans)
    run_prompts = _input_prompts(intervention, prompts)
    for plan in plans:
        plan.prepare(engine, prompts, run_prompts)

    clean, references, clean_top1 = engine.metric_values(prompts, metric)
    corrupted = None
    if prompts.corrupted is not None:
        corrupted = engine.metric_values(prompts.corrupted, metric, reference_from=prompts)[0]
    intervened, top1, stats = engine.intervened(run_prompts, plans, metric, references)
    _check_hooks(stats, engine.passes(run_prompts), intervention, strict)
    return effect_of(engine, prompts, intervention, metric, (clean, intervened, corrupted), stats, top1 != clean_top1)


def effect_of(
    engine: Engine,
    prompts: Prompts,
    intervention: Intervention,
    metric: Metric,
    values: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    stats: list[HookStats],
    flipped: np.ndarray,
    notes: tuple[str, ...] = (),
) -> Effect:
    """The Effect of a run: ``values`` are the clean, intervened and base metric per prompt."""
    clean, intervened, corrupted = values
    return Effect(
        clean=clean,
        intervened=intervened,
        corrupted=corrupted,
        groups=prompts.groups,
        intervention=intervention.to_dict(),
        metric=metric.name,
        hooks=tuple({"site": s.site, "fired": s.fired, "changed": s.changed} for s in stats),
        flipped=flipped,
        identity=claim_identity(engine.model.revision_at(engine.version), prompts, intervention, metric),
        notes=notes,
    )


def claim_identity(revision: str, prompts: Prompts, intervention: Intervention, metric: Metric) -> dict[str, Any]:
    """What produced an Effect's values: hashes of everything but floats, which are listed as
    ``parameters`` (compared with a tolerance) and ``derived`` vectors (compared, never matched on)."""
    spec = identity(intervention.to_dict())
    measured = None if isinstance(metric, Custom) else identity(metric.to_dict())
    custom = f"custom:{metric.name}:{digest(source_key(metric.fn))}" if isinstance(metric, Custom) else ""
    return {
        "model": revision,
        "prompts": prompts.fingerprint,
        "intervention": spec.key,
        "metric": custom if measured is None else measured.key,
        "parameters": {
            **{f"intervention.{path}": value for path, value in spec.parameters.items()},
            **{f"metric.{path}": value for path, value in (measured.parameters if measured else {}).items()},
        },
        "derived": spec.derived,
        "structure": {"intervention": spec.structure, "metric": measured.structure if measured else metric.name},
    }


def _input_prompts(intervention: Intervention, prompts: Prompts) -> Prompts:
    if intervention.runs_on == "corrupted":
        return _corrupted(prompts, "patch(source='clean') runs the corrupted prompts")
    return prompts


def _corrupted(prompts: Prompts, needed_by: str) -> Prompts:
    if prompts.corrupted is None:
        raise InterventionError(f"{needed_by}; build Prompts(..., corrupted=...) with token-aligned counterfactuals")
    return prompts.corrupted


def check_fired(stats: list[HookStats], passes: int) -> None:
    """Raise :class:`HookNotFiredError` unless every hook fired once per forward pass."""
    for s in stats:
        if s.fired < passes:
            raise HookNotFiredError(
                f"the hook on {s.site} fired {s.fired} times in {passes} forward passes; the model never "
                "computes that site as named. Check model.sites() or the raw module path"
            )


def _check_hooks(stats: list[HookStats], passes: int, intervention: Intervention, strict: bool) -> None:
    check_fired(stats, passes)
    unchanged = sorted({s.site for s in stats if not s.changed})
    if unchanged:
        message = (
            f"{type(intervention).__name__} left {', '.join(unchanged)} unchanged on every prompt "
            "(e.g. zero-ablating an activation that is already zero, or patching identical runs); "
            "its effect is zero by construction"
        )
        if strict:
            raise InterventionError(message)
        warnings.warn(NoOpInterventionWarning(message), stacklevel=3)


# -- the engine ---------------------------------------------------------------------------------


def activations(model: Model | nn.Module, prompts: Prompts, site: Any, *, batch_size: int = 32) -> torch.Tensor:
    """A site's clean activations on ``prompts``, e.g. to build a direction to steer along.

    Returns a float32 CPU tensor ``[n_prompts, max_len, ...]`` (zero at padding), or ``[n_prompts, ...]``
    when the site selects one position per prompt (``.at("last")`` or an int). ``site`` is one site:
    a name, ``mt.site(...)``, or a head or neuron selection such as ``mt.heads("0.1")`` or
    ``mt.neurons(0, 3, 7)``, which keeps only those components. The capture is cached on the model
    with its other runs, so interventions on the same site reuse it.
    """
    model = _checked(model, prompts, batch_size)
    sites = as_sites(site)
    if len(sites) != 1:
        raise SiteError(f"activations() reads one site at a time, got {len(sites)}: {', '.join(map(str, sites))}")
    site = sites[0]
    if site.direction is not None:
        raise SiteError(f"activations() reads whole sites; drop the direction from {site}")
    site.positions.check_count(len(prompts))
    point = model.resolve(site.name)
    check_index(site, point)
    engine = Engine(model, batch_size)
    engine.eager = point.kind == "pattern"
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


def _checked(model: Model | nn.Module, prompts: Prompts, batch_size: int) -> Model:
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


class Engine:
    """Forward passes over batches, with results cached on the model."""

    def __init__(self, model: Model, batch_size: int) -> None:
        self.model = model
        self.batch_size = int(batch_size)
        self.eager = False
        self.cache = model.cache
        self.version = model.weights_version()  # computed once per measure call
        self.cache.sync(self.version)

    def passes(self, prompts: Prompts) -> int:
        return -(-len(prompts) // self.batch_size)

    def forward(self, batch: Prompts) -> torch.Tensor:
        device = self.model.device
        return self.model.forward(batch.tokens.to(device), batch.attention_mask.to(device))

    def run(self, prompts: Prompts, hooks: HookSet, on_batch: Callable[[Prompts, torch.Tensor], None]) -> None:
        """One pass over ``prompts`` with ``hooks`` installed; ``on_batch(batch, logits)`` per batch."""
        with self.model.running(), hooks:
            if self.eager:
                with eager_attention(self.model.hf_model):
                    self._loop(prompts, on_batch)
            else:
                self._loop(prompts, on_batch)

    def _loop(self, prompts: Prompts, on_batch: Callable[[Prompts, torch.Tensor], None]) -> None:
        total = self.passes(prompts)
        with progress.bar(prompts.batches(self.batch_size), total=total, desc="forward passes", unit="batch") as bar:
            for batch in bar:
                self.current = batch
                on_batch(batch, self.forward(batch))

    def metric_values(
        self, prompts: Prompts, metric: Metric, reference_from: Prompts | None = None
    ) -> tuple[np.ndarray, list | None, np.ndarray]:
        """Un-intervened metric per prompt, the metric's per-batch reference state, and top-1 tokens.

        ``reference_from`` supplies the reference (e.g. clean log-probs for KL) when measuring
        another, token-aligned prompt set such as the corrupted twins.
        """
        source = None if reference_from is None or not metric.needs_reference else reference_from
        key = (
            "metric",
            self.eager,
            prompts.fingerprint,
            _metric_identity(metric),
            self.batch_size if metric.needs_reference else 0,
            None if source is None else source.fingerprint,
        )

        def compute():
            references = self.metric_values(source, metric)[1] if source is not None else None
            values, own, top1 = [], [], []

            def on_batch(batch, logits):
                reference = references[len(values)] if references is not None else metric.reference(logits, batch)
                values.append(metric(logits, batch, reference))
                own.append(reference)
                top1.append(_top1(logits, batch))

            self.run(prompts, HookSet(self.model.hf_model), on_batch)
            return _to_numpy(values, metric), own if metric.needs_reference else None, np.concatenate(top1)

        return self.cache.get(key, compute)

    def capture(self, prompts: Prompts, point: HookPoint) -> torch.Tensor:
        """The site's activation on every prompt, padded to ``[n, max_len, ...]``."""
        return self.capture_all(prompts, [point])[0]

    def capture_all(self, prompts: Prompts, points: list[HookPoint]) -> list[torch.Tensor]:
        """Several sites' activations, from one clean pass for all those not yet cached."""
        keys = [("capture", self.eager, prompts.fingerprint, point.name) for point in points]
        found = {key: self.cache.get(key, lambda: None) for key in keys if key in self.cache}
        missing = {key: point for key, point in zip(keys, points, strict=True) if key not in found}
        if missing:
            hooks = HookSet(self.model.hf_model)
            stores = {key: self._reader(prompts, point, hooks) for key, point in missing.items()}
            self.run(prompts, hooks, lambda batch, logits: None)
            for key, (store, stats) in stores.items():
                check_fired([stats], self.passes(prompts))
                found[key] = self.cache.get(key, functools.partial(operator.getitem, store, 0))
        return [found[key] for key in keys]

    def _reader(self, prompts: Prompts, point: HookPoint, hooks: HookSet) -> tuple[list[torch.Tensor], HookStats]:
        """Add to ``hooks`` a read of ``point`` into a padded ``[n, max_len, ...]`` store (filled by the run)."""
        store: list[torch.Tensor] = []

        def read(view):
            if not store:
                store.append(view.new_zeros(_padded_shape(len(prompts), prompts.tokens.shape[1], view, point)))
            _write_padded(store[0], self.current.index.to(view.device), view, point)

        return store, hooks.add(point, read)

    def mean(self, prompts: Prompts, point: HookPoint, per_position: bool) -> torch.Tensor:
        """Mean activation over real (non-padding) tokens: per position ``[max_len, ...]`` or pooled."""

        def compute():
            width = prompts.tokens.shape[1]
            sums: list[torch.Tensor] = []

            def read(view):
                batch = self.current
                real = batch.attention_mask.to(device=view.device, dtype=torch.float64)
                real = real.view(*real.shape, *[1] * (view.dim() - 2))
                values = view.new_zeros(_padded_shape(len(batch), width, view, point), dtype=torch.float64)
                _write_padded(
                    values, torch.arange(len(batch), device=view.device), view.to(torch.float64) * real, point
                )
                counts = torch.zeros(
                    len(batch), width, *[1] * (view.dim() - 2), dtype=torch.float64, device=view.device
                )
                counts[:, : view.shape[1]] = real
                dims = 0 if per_position else (0, 1)
                total, count = values.sum(dims), counts.sum(dims)
                if sums:
                    total, count = total + sums[0], count + sums[1]
                sums[:] = [total, count, view.dtype]

            self._read_pass(prompts, point, read)
            return (sums[0] / sums[1]).to(sums[2])

        return self.cache.get(("mean", self.eager, prompts.fingerprint, point.name, per_position), compute)

    def _read_pass(self, prompts: Prompts, point: HookPoint, read: Callable[[torch.Tensor], None]) -> None:
        hooks = HookSet(self.model.hf_model)
        stats = hooks.add(point, read)
        self.run(prompts, hooks, lambda batch, logits: None)
        check_fired([stats], self.passes(prompts))

    def path_inputs(self, part: PathPatch, prompts: Prompts) -> dict[str, torch.Tensor]:
        """The readers' values when only the direct paths from ``part.sender`` carry its source value.

        One pass over the base prompts in which every writer to the residual stream (from the first
        sender to the last reader) is held at its clean value, except the sender's entries, which
        take their value on the source prompts.
        """
        base, source = _input_prompts(part, prompts), _patch_source(part, prompts)
        source.check_vocab(self.model.vocab_size)
        senders = _path_senders(self.model, part)
        reader_sites = _path_readers(self.model, part)
        readers = list({site.name: self.model.resolve(site.name) for site in reader_sites}.values())
        # Writers before the first sender are clean in the base run anyway; after the last reader, irrelevant.
        first = min(write_stage(site.name) for site in senders)
        last = max(read_stage(self.model, site.name) for site in reader_sites)
        between = [name for name in writers(self.model) if first <= write_stage(name) <= last]

        def compute():
            points = [self.model.resolve(name) for name in between]
            clean = self.capture_all(base, points)
            sent = sorted({site.name for site in senders})
            from_source = dict(zip(sent, self.capture_all(source, [self.model.resolve(n) for n in sent]), strict=True))
            hooks = HookSet(self.model.hf_model)
            frozen = [
                hooks.add(point, self._freeze(point, held, senders, from_source.get(point.name)))
                for point, held in zip(points, clean, strict=True)
            ]
            stores = {point.name: self._reader(base, point, hooks) for point in readers}
            self.run(base, hooks, lambda batch, logits: None)
            check_fired(frozen + [stats for _, stats in stores.values()], self.passes(base))
            return {name: store[0] for name, (store, _) in stores.items()}

        return self.cache.get(("paths", self.eager, base.fingerprint, part.key()), compute)

    def _freeze(
        self, point: HookPoint, held: torch.Tensor, senders: tuple[Site, ...], source: torch.Tensor | None
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """An edit that sets a writer to ``held``, except where a sender selects it: there ``source``."""
        chosen = [site for site in senders if site.name == point.name]

        def edit(view: torch.Tensor) -> torch.Tensor:
            batch = self.current
            value = take_rows(held, batch.index, view, point)
            for site in chosen:
                assert source is not None  # the senders' own writers always have source values
                select = selection_mask(view, batch, site)
                sent = take_rows(source, batch.index, view, point)
                value = sent if select is None else torch.where(select, sent, value)
            return value

        return edit

    def captured(self, prompts: Prompts, plans: list[Plan], points: list[HookPoint]) -> list[torch.Tensor]:
        """Activations at ``points`` (each ``[n, max_len, ...]``) with every plan's edit installed."""
        hooks = HookSet(self.model.hf_model)
        stats = [hooks.add(plan.point, self._edit(plan)) for plan in plans]
        stores = [self._reader(prompts, point, hooks) for point in points]
        self.run(prompts, hooks, lambda batch, logits: None)
        check_fired(stats + [read for _, read in stores], self.passes(prompts))
        return [store[0] for store, _ in stores]

    def intervened(
        self, prompts: Prompts, plans: list[Plan], metric: Metric, references: list | None
    ) -> tuple[np.ndarray, np.ndarray, list[HookStats]]:
        """Metric and top-1 token per prompt with every plan's edit installed; also the hooks' stats."""
        hooks = HookSet(self.model.hf_model)
        stats = [hooks.add(plan.point, self._edit(plan)) for plan in plans]
        values: list[torch.Tensor] = []
        top1: list[np.ndarray] = []

        def on_batch(batch, logits):
            reference = references[len(values)] if references is not None else None
            values.append(metric(logits, batch, reference))
            top1.append(_top1(logits, batch))

        self.run(prompts, hooks, on_batch)
        return _to_numpy(values, metric), np.concatenate(top1), stats

    def _edit(self, plan: Plan) -> Callable[[torch.Tensor], torch.Tensor]:
        site = plan.site

        def edit(view: torch.Tensor) -> torch.Tensor:
            batch = self.current
            value = plan.value(view, batch)
            if plan.project:
                unit = _unit(site, view)
                shift = ((value.float() - view.float()) @ unit).unsqueeze(-1) * unit
                value = (view.float() + shift).to(view.dtype)
            if plan.point.kind == "pattern":  # a pattern never puts weight on a prompt's padding
                keys = torch.arange(view.shape[-1], device=view.device) < batch.lengths.to(view.device)[:, None]
                value = value * keys[:, None, None, :]
            select = selection_mask(view, batch, site)
            return value if select is None else torch.where(select, value, view)

        return edit


def _metric_identity(metric: Metric) -> object:
    """A cache key that tells apart user functions and same-named classes from different modules."""
    if isinstance(metric, Custom):
        return _Identity(metric.fn)
    return (type(metric), metric.key())


class _Identity:
    """Hashes and compares by object identity; holds the object so its id is never reused."""

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj


def _top1(logits: torch.Tensor, batch: Prompts) -> np.ndarray:
    """The top-1 token at each prompt's answer position."""
    rows = torch.arange(len(batch), device=logits.device)
    return logits[rows, batch.answer_positions.to(logits.device)].argmax(-1).cpu().numpy()


def _padded_shape(n: int, width: int, view: torch.Tensor, point: HookPoint) -> tuple[int, ...]:
    """``[n, width, ...]`` storage for a site's activations; patterns also pad their key axis."""
    last = width if point.kind == "pattern" else view.shape[-1]
    return (n, width, *view.shape[2:-1], last)


def _write_padded(store: torch.Tensor, rows: torch.Tensor, view: torch.Tensor, point: HookPoint) -> None:
    length = view.shape[1]
    if point.kind == "pattern":
        store[rows, :length, ..., :length] = view
    else:
        store[rows, :length] = view


def _to_numpy(values: list[torch.Tensor], metric: Metric) -> np.ndarray:
    array = torch.cat([v.detach().float().cpu().reshape(-1) for v in values]).numpy().astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(array))
    if len(bad):
        raise MetricError(
            f"metric {metric.name} gave {array[bad[0]]} on prompt {bad[0]} ({len(bad)} non-finite values); "
            "a claim cannot be judged on NaN or infinite values"
        )
    return array


def _fit(vector: torch.Tensor, view: torch.Tensor, site: Site) -> torch.Tensor:
    """``vector`` on the view's device, after checking it matches the view's last dimension."""
    if vector.shape[0] != view.shape[-1]:
        raise InterventionError(
            f"direction for {site.name} has {vector.shape[0]} entries but the activation's last dimension "
            f"is {view.shape[-1]}"
        )
    return vector.to(view.device)


def _unit(site: Site, view: torch.Tensor) -> torch.Tensor:
    vector = _fit(torch.tensor(site.direction, dtype=torch.float64), view, site)
    vector = vector / vector.abs().max()  # the norm of a huge or tiny vector over- or underflows
    return (vector / vector.norm()).to(torch.float32)


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


# -- plans: one per (atomic intervention, site) ----------------------------------------------------


@dataclass
class Plan:
    """How to compute one site's new value; ``prepare`` fetches what it needs before the run."""

    part: Intervention
    site: Site
    point: HookPoint
    project: bool
    value: ValueFn = None  # type: ignore[assignment]

    def prepare(self, engine: Engine, prompts: Prompts, run_prompts: Prompts) -> None:
        part = self.part
        if isinstance(part, Steer):
            step = torch.tensor(self.site.direction, dtype=torch.float64) * part.coef
            self.value = lambda view, batch: view + _fit(step, view, self.site).to(dtype=view.dtype)
        elif isinstance(part, PathPatch):
            acts = engine.path_inputs(part, prompts)[self.point.name]
            self.value = lambda view, batch: take_rows(acts, batch.index, view, self.point)
        elif isinstance(part, Patch):
            source = _patch_source(part, prompts)
            source.check_vocab(engine.model.vocab_size)
            acts = engine.capture(source, self.point)
            self.value = lambda view, batch: take_rows(acts, batch.index, view, self.point)
        elif not isinstance(part, Ablate):
            raise InterventionError(f"{type(part).__name__} is not a single edit; mt.measure runs it whole")
        elif part.method == "zero":
            self.value = lambda view, batch: torch.zeros_like(view)
        elif part.method == "mean":
            reference = part.reference if isinstance(part.reference, Prompts) else prompts  # a str is resample's
            reference.check_vocab(engine.model.vocab_size)
            mean = engine.mean(reference, self.point, part.per_position)
            self.value = _mean_value(mean, part.per_position, reference, run_prompts, self.point)
        else:
            donors, reference = _donors(part, prompts)
            reference.check_vocab(engine.model.vocab_size)
            acts = engine.capture(reference, self.point)
            self.value = lambda view, batch: take_rows(acts, donors[batch.index], view, self.point)


def _plans(part: Intervention, model: Model, prompts: Prompts) -> list[Plan]:
    if not isinstance(part, Ablate | Patch | PathPatch | Steer):
        raise InterventionError(f"{type(part).__name__} is not a single edit; mt.measure runs it whole")
    named = (*part.sender, *part.receivers) if isinstance(part, PathPatch) else _sites_of(part)
    for site in named:
        site.positions.check_count(len(prompts))
    sites = _path_readers(model, part) if isinstance(part, PathPatch) else _sites_of(part)
    plans = []
    for site in sites:
        point = model.resolve(site.name)
        check_index(site, point)
        project = site.direction is not None and not isinstance(part, Steer)
        plans.append(Plan(part, site, point, project))
    return plans


def _sites_of(part: Ablate | Patch | Steer) -> tuple[Site, ...]:
    return (part.direction,) if isinstance(part, Steer) else tuple(part.sites)


def _path_senders(model: Model, part: PathPatch) -> tuple[Site, ...]:
    """The senders as writer sites (an attention layer's output is all its heads), checked."""
    check_supported(model, "path_patch")
    senders = []
    for site in part.sender:
        if site.name.endswith(".hook_attn_out"):
            site = Site(site.name.replace(".hook_attn_out", ".attn.hook_z"), None, site.positions)
        write_stage(site.name)  # raises for sites that do not write to the residual stream
        check_index(site, model.resolve(site.name))
        senders.append(site)
    return tuple(senders)


def _path_readers(model: Model, part: PathPatch) -> list[Site]:
    """The receivers' input sites, each checked to read the residual stream after every sender writes."""
    senders = _path_senders(model, part)
    last = max(senders, key=lambda site: write_stage(site.name))
    readers = []
    for receiver in part.receivers:
        for site in reader_sites(model, receiver):
            check_index(site, model.resolve(site.name))
            if read_stage(model, site.name) < write_stage(last.name):
                raise InterventionError(
                    f"{last} writes to the residual stream after {receiver} reads it; a path runs forward, "
                    "so pick a receiver that reads later"
                )
            readers.append(site)
    return readers


def check_index(site: Site, point: HookPoint) -> None:
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


def take_rows(acts: torch.Tensor, rows: torch.Tensor, view: torch.Tensor, point: HookPoint) -> torch.Tensor:
    """Rows ``rows`` of stored activations ``acts``, cut to the length (and shape) of ``view``."""
    length = view.shape[1]
    value = acts[rows.to(acts.device), :length]
    if point.kind == "pattern":
        value = value[..., :length]
    return value.to(view.device)


def _patch_source(part: Patch | PathPatch, prompts: Prompts) -> Prompts:
    if part.source == "corrupted":
        return _corrupted(prompts, "patch(source='corrupted') needs the corrupted prompts")
    source = part.source
    if not isinstance(source, Prompts):  # "clean"
        return prompts
    if len(source) != len(prompts) or not torch.equal(source.lengths, prompts.lengths):
        raise InterventionError(
            "patch source prompts must be token-aligned with the measured prompts: same number of prompts "
            f"and same length per prompt (got {len(source)} prompts for {len(prompts)})"
        )
    return source


def _mean_value(mean: torch.Tensor, per_position: bool, reference: Prompts, run: Prompts, point: HookPoint) -> ValueFn:
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


def _donors(part: Ablate, prompts: Prompts) -> tuple[torch.Tensor, Prompts]:
    """For each prompt, the row of the reference prompt whose activation replaces its own."""
    if part.reference == "corrupted":
        return torch.arange(len(prompts)), _corrupted(prompts, "resample from reference='corrupted'")
    reference = part.reference if isinstance(part.reference, Prompts) else prompts
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
