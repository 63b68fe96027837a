"""Causal scrubbing: run a model on the treeified hypothesis, every path on its own resampled prompt.

The hypothesis is evaluated from the root down. To compute a node on a reference prompt, mitest
runs one pass over the prompt set in which every writer to the residual stream that the node
reads is replaced: writers the hypothesis names as the node's parents take the value computed
(recursively) on a prompt that agrees with the reference on the parent's feature; every other
writer takes its clean value on one random other prompt. The node's own output is read from that
pass. A head node whose edges name separate inputs gets one such pass per input (q, k, v), then a
pass that combines them. The root is the logits; the metric always reads the reference prompt's
own answer and targets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable

import numpy as np
import torch

from mitest.claims.effect import Effect
from mitest.engine.edits import Edit, check_index, selection_mask, take_rows
from mitest.engine.effects import effect_of
from mitest.engine.hooks import HookStats
from mitest.engine.runner import Engine, check_fired
from mitest.errors import InterventionError
from mitest.model.layouts import ResolvedSite
from mitest.model.model import Model
from mitest.model.residual import EMBED, LOGITS, check_separate_heads, check_supported, read_stage, write_stage, writers
from mitest.spec.hypothesis import (
    ALL_INPUTS,
    HEAD_INPUTS,
    OUTPUT,
    Feature,
    Hypothesis,
    HypothesisError,
    Prompt,
    is_residual,
)
from mitest.spec.interventions import Scrub
from mitest.spec.metrics import Metric
from mitest.spec.prompts import Prompts
from mitest.spec.sites import Site

CANCELLING_SHARE = 0.05  # share of prompts on each side of the clean model that counts as cancellation


def scrub_effect(model: Model, prompts: Prompts, part: Scrub, metric: Metric, batch_size: int) -> Effect:
    """The Effect of :func:`mitest.measure` for a scrub: clean, scrubbed (``intervened``) and fully
    resampled (``corrupted``) metric values per prompt, with notes on unmatched features and cancellation.
    """
    check_supported(model, "scrub")
    engine = Engine(model, batch_size)
    clean, references, clean_top1 = engine.metric_values(prompts, metric)
    scrubber = _Scrubber(engine, prompts, part)
    scrubbed, top1, stats = scrubber.output(
        part.hypothesis.parents, np.random.default_rng(part.seed), metric, references
    )
    # The base has its own generator, so every hypothesis scrubbed with one seed shares it.
    resampled, _, _ = scrubber.output(lambda child, read: (), np.random.default_rng([part.seed, 1]), metric, references)
    notes = scrubber.unmatched() + _cancellation(clean, scrubbed, resampled, part.tolerance)
    return effect_of(engine, prompts, part, metric, (clean, scrubbed, resampled), stats, top1 != clean_top1, notes)


class _Scrubber:
    """Evaluates nodes of one hypothesis on resampled prompts, with one seeded generator."""

    def __init__(self, engine: Engine, prompts: Prompts, part: Scrub) -> None:
        self.engine, self.prompts, self.part = engine, prompts, part
        self.hypothesis: Hypothesis = part.hypothesis
        self.model = engine.model
        _check_order(self.model, self.hypothesis)
        names = writers(self.model)
        self.points = {name: self.model.resolve(name) for name in names}
        for name, site in self.hypothesis.nodes:
            check_index(site, self.model.resolve(site.name))
            if self._split(name):
                check_separate_heads(self.model, f"node {name!r} with edges into its q, k or v")
        self.clean = dict(zip(names, engine.capture_all(prompts, list(self.points.values())), strict=True))
        self.lengths = prompts.lengths.numpy()
        self.features = {name: _feature_values(name, fn, prompts) for name, fn in self.hypothesis.features}
        # (length, feature value) -> the prompts that have it, per node with a feature
        self.agreeing = {
            name: _by_key(list(zip(self.lengths.tolist(), values, strict=True)))
            for name, values in self.features.items()
        }

    def output(
        self,
        parents: Callable[[str, str], tuple[str, ...]],
        rng: np.random.Generator,
        metric: Metric,
        references: list | None,
    ) -> tuple[np.ndarray, np.ndarray, list[HookStats]]:
        """Metric values, top-1 tokens and hook stats of the logits with the given root parents."""
        self.rng = rng
        rows = np.arange(len(self.prompts))
        edits = self._inputs(OUTPUT, parents(OUTPUT, ALL_INPUTS), rows, read_stage(self.model, LOGITS))
        values, top1, stats, _ = self.engine.intervened(self.prompts, edits, metric, references)
        check_fired(stats, self.engine.passes(self.prompts))
        return values, top1, stats

    def value(self, node: str, rows: np.ndarray) -> torch.Tensor:
        """Node ``node``'s writer activation ``[n, len, ...]``, row ``i`` computed for reference ``rows[i]``."""
        site = self.hypothesis.site(node)
        if site.name == EMBED:
            return self.clean[EMBED][torch.from_numpy(rows)]
        point = self.model.resolve(site.name)
        stage = _node_read_stage(self.model, site)
        if not self._split(node):
            edits = self._inputs(node, self.hypothesis.parents(node, ALL_INPUTS), rows, stage)
            return self.engine.captured(self.prompts, edits, [point])[0]
        layer = site.name.split(".")[1]
        combined = []
        for read in HEAD_INPUTS:
            read_point = self.model.resolve(f"blocks.{layer}.attn.hook_{read}")
            edits = self._inputs(node, self.hypothesis.parents(node, read), rows, stage)
            acts = self.engine.captured(self.prompts, edits, [read_point])[0]
            combined.append(Edit(Site(read_point.name, site.index), read_point, _copy(acts, read_point)))
        return self.engine.captured(self.prompts, combined, [point])[0]

    def unmatched(self) -> tuple[str, ...]:
        """Notes naming features that leave prompts with no other agreeing prompt to resample from."""
        notes = []
        for node, groups in self.agreeing.items():
            alone = sum(len(rows) == 1 for rows in groups.values())
            if alone:
                notes.append(
                    f"feature of node {node!r}: {alone} of {len(self.prompts)} prompts have no other prompt of their "
                    "length that agrees on it, so their inputs to it are not resampled "
                    "(add prompts that share the feature)"
                )
        return tuple(notes)

    def _split(self, node: str) -> bool:
        """Whether the hypothesis gives the head node's q, k and v inputs separate parents."""
        return any(edge.child == node and edge.read != ALL_INPUTS for edge in self.hypothesis.edges)

    def _inputs(self, node: str, parents: tuple[str, ...], rows: np.ndarray, stage: int) -> list[Edit]:
        """Edits replacing every writer up to ``stage``: claimed parents resampled by feature, the rest random."""
        random_rows = torch.from_numpy(self._other(rows))
        claimed = [(self.hypothesis.site(p), self.value(p, self._agreeing(rows, p))) for p in parents]
        streams = [(site, acts) for site, acts in claimed if is_residual(site)]
        # A residual-stream parent stands for every writer before it: they are not replaced one by one.
        below = -1 if not streams else read_stage(self.model, streams[0][0].name)
        edits = []
        for name, point in self.points.items():
            if below < write_stage(name) <= stage:
                mine = [(site, acts) for site, acts in claimed if site.name == name]
                edits.append(Edit(Site(name), point, _assemble(point, self.clean[name], random_rows, mine)))
        for site, acts in streams:
            point = self.model.resolve(site.name)
            clean = self.engine.capture(self.prompts, point)
            edits.append(Edit(Site(site.name), point, _assemble(point, clean, random_rows, [(site, acts)])))
        return edits

    def _other(self, rows: np.ndarray) -> np.ndarray:
        """For each reference, a random other prompt of the same length."""
        out = np.empty_like(rows)
        for i, row in enumerate(rows):
            pool = np.flatnonzero((self.lengths == self.lengths[row]) & (np.arange(len(self.lengths)) != row))
            if len(pool) == 0:
                raise InterventionError(
                    f"scrub: prompt {row} has {self.lengths[row]} tokens and no other prompt has that length; "
                    "scrubbing swaps position-aligned activations, so add prompts of that length"
                )
            out[i] = self.rng.choice(pool)
        return out

    def _agreeing(self, rows: np.ndarray, node: str) -> np.ndarray:
        """For each reference, a random other prompt agreeing on ``node``'s feature (itself if none does)."""
        groups = self.agreeing.get(node)
        if groups is None:
            return rows
        values = self.features[node]
        out = rows.copy()
        for i, row in enumerate(rows):
            pool = groups[(int(self.lengths[row]), values[row])]
            pool = pool[pool != row]
            if len(pool):
                out[i] = self.rng.choice(pool)
        return out


def _assemble(
    point: ResolvedSite, clean: torch.Tensor, random_rows: torch.Tensor, claimed: list[tuple[Site, torch.Tensor]]
) -> Callable[[torch.Tensor, Prompts], torch.Tensor]:
    """A writer's value: its clean value on the random prompts, overlaid with the claimed nodes' values."""

    def value(view: torch.Tensor, batch: Prompts) -> torch.Tensor:
        out = take_rows(clean, random_rows[batch.index], view, point)
        for site, acts in claimed:
            mine = take_rows(acts, batch.index, view, point)
            select = selection_mask(view, batch, site)
            out = mine if select is None else torch.where(select, mine, out)
        return out

    return value


def _copy(acts: torch.Tensor, point: ResolvedSite) -> Callable[[torch.Tensor, Prompts], torch.Tensor]:
    return lambda view, batch: take_rows(acts, batch.index, view, point)


def _node_read_stage(model: Model, site: Site) -> int:
    """The last writer stage a node sees: a head's and an MLP's input, or a residual point itself."""
    if is_residual(site):
        return read_stage(model, site.name)
    layer = int(site.name.split(".")[1])
    kind = "attn.hook_q" if site.name.endswith("attn.hook_z") else "hook_mlp_in"
    return read_stage(model, f"blocks.{layer}.{kind}")


def _provided_stage(model: Model, site: Site) -> int:
    """The stage a node's output enters the stream: a writer's own stage, or a residual point's."""
    return read_stage(model, site.name) if is_residual(site) else write_stage(site.name)


def _check_order(model: Model, hypothesis: Hypothesis) -> None:
    """Edges run forward, and a residual-stream parent is the only parent of a read at or before it."""
    for edge in hypothesis.edges:
        parent = hypothesis.site(edge.parent)
        child_stage = (
            read_stage(model, LOGITS) if edge.child == OUTPUT else _node_read_stage(model, hypothesis.site(edge.child))
        )
        if _provided_stage(model, parent) > child_stage:
            raise HypothesisError(
                f"edge {edge.parent!r} -> {edge.child!r}: {parent} enters the residual stream after "
                f"{edge.child} reads it; edges run forward through the layers"
            )
    for child in {edge.child for edge in hypothesis.edges}:
        reads = (
            HEAD_INPUTS if any(e.child == child and e.read != ALL_INPUTS for e in hypothesis.edges) else (ALL_INPUTS,)
        )
        for read in reads:
            parents = [hypothesis.site(p) for p in hypothesis.parents(child, read)]
            streams = [site for site in parents if is_residual(site)]
            if len(streams) > 1:
                raise HypothesisError(
                    f"{child!r} reads two residual-stream nodes ({streams[0]}, {streams[1]}); keep one"
                )
            inside = [
                site
                for site in parents
                if streams
                and not is_residual(site)
                and _provided_stage(model, site) <= read_stage(model, streams[0].name)
            ]
            if inside:
                raise HypothesisError(
                    f"{child!r} reads {inside[0]} both directly and inside the residual-stream node {streams[0]}; "
                    "an edge from the residual stream already carries everything written before it"
                )


def _by_key(keys: list) -> dict:
    groups: dict = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return {key: np.array(rows) for key, rows in groups.items()}


def _feature_values(node: str, fn: Feature, prompts: Prompts) -> list[Hashable]:
    values = []
    for i in range(len(prompts)):
        prompt = Prompt(
            tokens=tuple(prompts.ids[i, : int(prompts.lengths[i])].tolist()),
            answer=None if prompts.answers is None else int(prompts.answers[i]),
            wrong=None if prompts.wrong is None else int(prompts.wrong[i]),
            group=None if prompts.groups is None else prompts.groups[i],
            index=i,
        )
        try:
            value = fn(prompt)
            hash(value)
        except Exception as error:  # noqa: BLE001 - the user's function; say which node and prompt
            raise HypothesisError(
                f"feature of node {node!r} failed on prompt {i} ({type(error).__name__}: {error}); "
                "a feature is f(prompt) -> hashable value, with prompt.tokens, .answer, .wrong, .group"
            ) from error
        values.append(value)
    return values


def _cancellation(clean: np.ndarray, scrubbed: np.ndarray, resampled: np.ndarray, tolerance: float) -> tuple[str, ...]:
    """A note when the mean hides prompts scrubbed well beyond the clean model and others well short of it.

    "Better" is the direction from the resampled model to the clean one. Per-prompt resampling noise
    larger than ``tolerance`` times the gap also raises it: a flag to look at, not a test.
    """
    gap = float(np.mean(clean - resampled))
    if gap == 0:
        return ()
    deviation = np.sign(gap) * (scrubbed - clean) / abs(gap)
    above, below = int((deviation > tolerance).sum()), int((deviation < -tolerance).sum())
    floor = max(2, math.ceil(CANCELLING_SHARE * len(clean)))
    if above < floor or below < floor:
        return ()
    return (
        f"cancellation: scrubbing made {above} of {len(clean)} prompts better than the clean model and {below} "
        f"worse, each by more than {tolerance:g} of the clean-minus-resampled gap; the mean hides both",
    )
