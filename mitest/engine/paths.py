"""Path patching on the engine: the receivers' inputs when only the sender's direct paths change.

One pass over the base prompts holds every writer to the residual stream (from the first sender to
the last reader) at its clean value, except the sender's entries, which take their value on the
source prompts; the readers' inputs in that pass become the receivers' edits.
"""

from __future__ import annotations

import torch

from mitest.engine.edits import Edit, ValueFn, check_index, selection_mask, take_rows
from mitest.engine.runner import Engine, check_fired
from mitest.errors import InterventionError
from mitest.model.layouts import ResolvedSite
from mitest.model.residual import check_supported, read_stage, reader_sites, write_stage, writers
from mitest.spec.interventions import PathPatch
from mitest.spec.prompts import Prompts
from mitest.spec.sites import Site


def path_edits(engine: Engine, part: PathPatch, *, base: Prompts, source: Prompts) -> list[Edit]:
    """One edit per receiver input site, setting it to its value in the frozen pass."""
    readers = path_readers(engine.model, part)
    inputs = path_inputs(engine, part, readers, base=base, source=source)
    edits = []
    for site in readers:
        point = engine.model.resolve(site.name)
        acts = inputs[point.name]
        edits.append(Edit(site, point, _rows(acts, point), project=site.direction is not None))
    return edits


def path_inputs(
    engine: Engine, part: PathPatch, readers: list[Site], *, base: Prompts, source: Prompts
) -> dict[str, torch.Tensor]:
    """The readers' activations (by hook name) in the pass where only the sender's paths carry ``source``."""
    model = engine.model
    source.check_vocab(model.vocab_size)
    senders = path_senders(model, part)
    points = list({site.name: model.resolve(site.name) for site in readers}.values())
    # Writers before the first sender are clean in the base run anyway; after the last reader, irrelevant.
    first = min(write_stage(site.name) for site in senders)
    last = max(read_stage(model, site.name) for site in readers)
    between = [name for name in writers(model) if first <= write_stage(name) <= last]

    def compute():
        held_points = [model.resolve(name) for name in between]
        clean = engine.capture_all(base, held_points)
        sent = sorted({site.name for site in senders})
        from_source = dict(zip(sent, engine.capture_all(source, [model.resolve(n) for n in sent]), strict=True))
        freeze = [
            Edit(Site(point.name), point, _frozen(point, held, senders, from_source.get(point.name)))
            for point, held in zip(held_points, clean, strict=True)
        ]
        hooks, frozen, _ = engine.hooks(freeze)
        stores = {point.name: engine.reader(base, point, hooks) for point in points}
        engine.run(base, hooks, lambda batch, logits: None)
        check_fired(frozen + [stats for _, stats in stores.values()], engine.passes(base))
        return {name: store[0] for name, (store, _) in stores.items()}

    return engine.cache.get(("paths", engine.eager, base.fingerprint, part.key()), compute)


def path_senders(model, part: PathPatch) -> tuple[Site, ...]:
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


def path_readers(model, part: PathPatch) -> list[Site]:
    """The receivers' input sites, each checked to read the residual stream after every sender writes."""
    senders = path_senders(model, part)
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


def _frozen(point: ResolvedSite, held: torch.Tensor, senders: tuple[Site, ...], source: torch.Tensor | None) -> ValueFn:
    """A writer held at ``held``, except where a sender selects it: there ``source``."""
    chosen = [site for site in senders if site.name == point.name]

    def value(view: torch.Tensor, batch: Prompts) -> torch.Tensor:
        value = take_rows(held, batch.index, view, point)
        for site in chosen:
            assert source is not None  # the senders' own writers always have source values
            select = selection_mask(view, batch, site)
            sent = take_rows(source, batch.index, view, point)
            value = sent if select is None else torch.where(select, sent, value)
        return value

    return value


def _rows(acts: torch.Tensor, point: ResolvedSite) -> ValueFn:
    return lambda view, batch: take_rows(acts, batch.index, view, point)
