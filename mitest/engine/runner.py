"""The engine: batched forward passes with hooks installed, results cached on the model.

:class:`Engine` is the only code that runs the model. It computes clean metric values, captures and
averages activations, and runs passes with :class:`~mitest.engine.edits.Edit` s installed; every
hook is checked to have fired once per batch. Results live in the model's
:class:`~mitest.model.cache.RunCache`, keyed by what produced them.
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np
import torch

from mitest import progress
from mitest.engine.edits import Edit, apply
from mitest.engine.hooks import HookSet, HookStats, close, eager_attention
from mitest.errors import HookNotFiredError, MetricError, ReadsDone
from mitest.model.layouts import ResolvedSite
from mitest.model.model import Model
from mitest.spec.metrics import Custom, Metric
from mitest.spec.prompts import Prompts


class Engine:
    """Forward passes over batches of ``batch_size`` prompts; ``eager`` runs attention in the eager
    kernel (needed to read or edit attention patterns)."""

    def __init__(self, model: Model, batch_size: int, *, eager: bool = False) -> None:
        self.model = model
        self.batch_size = int(batch_size)
        self.eager = eager
        self.cache = model.cache
        self.version = model.weights_version()  # computed once per measure call
        self.cache.sync(self.version)
        self._batch: Prompts | None = None  # the batch being run, read by the hooks

    def passes(self, prompts: Prompts) -> int:
        """Forward passes (batches) needed for ``prompts``."""
        return -(-len(prompts) // self.batch_size)

    def run(self, prompts: Prompts, hooks: HookSet, on_batch: Callable[[Prompts, torch.Tensor], None]) -> None:
        """One pass over ``prompts`` with ``hooks`` installed; ``on_batch(batch, logits)`` per batch."""
        with self.model.running(), hooks:
            if self.eager:
                with eager_attention(self.model.hf_model):
                    self._loop(prompts, on_batch)
            else:
                self._loop(prompts, on_batch)

    def read(self, prompts: Prompts, hooks: HookSet, reads: list[tuple[ResolvedSite, HookStats]]) -> None:
        """A pass that only reads (``hooks`` holds nothing but the ``reads``, each a point and the stats of
        its read): each batch stops as soon as every read has fired, so the layers above the last read and
        the unembedding never run. Only on a model with a site table, whose modules each run once a pass;
        a raw-module model runs whole (its modules may run several times, e.g. weights shared across depth)."""
        if self.model.family is None:
            self.run(prompts, hooks, lambda batch, logits: None)
            return
        stopped = [0]  # batches stopped so far: every read has fired that many times before this batch

        def enough(view: torch.Tensor) -> None:
            if min(stats.fired for _, stats in reads) > stopped[0]:
                stopped[0] += 1
                raise ReadsDone

        for point in {point.name: point for point, _ in reads}.values():
            hooks.add(point, enough)
        self.run(prompts, hooks, lambda batch, logits: None)

    def _loop(self, prompts: Prompts, on_batch: Callable[[Prompts, torch.Tensor], None]) -> None:
        device = self.model.device
        batches = progress.bar(
            prompts.batches(self.batch_size), total=self.passes(prompts), desc="forward passes", unit="batch"
        )
        try:
            with batches as bar:
                for batch in bar:
                    self._batch = batch
                    try:
                        logits = self.model.forward(batch.tokens.to(device), batch.attention_mask.to(device))
                    except ReadsDone:  # a read-only pass has all it needs from this batch
                        continue
                    on_batch(batch, logits)
        finally:
            self._batch = None

    def stacked_pass(
        self, batch: Prompts, copies: int, hooks: HookSet, contexts: tuple[AbstractContextManager, ...] = ()
    ) -> torch.Tensor:
        """Logits of one pass over ``copies`` copies of ``batch`` stacked along the batch axis, with
        ``hooks`` and ``contexts`` installed (:meth:`batch` is ``batch``, one copy)."""
        device = self.model.device
        tokens = batch.tokens.repeat(copies, 1).to(device)
        mask = batch.attention_mask.repeat(copies, 1).to(device)
        with self.model.running(), hooks, contextlib.ExitStack() as stack:
            if self.eager:
                stack.enter_context(eager_attention(self.model.hf_model))
            for context in contexts:
                stack.enter_context(context)
            self._batch = batch
            try:
                return self.model.forward(tokens, mask)
            finally:
                self._batch = None

    def batch(self) -> Prompts:
        """The batch being run (for hooks and value functions)."""
        assert self._batch is not None, "read only inside a pass"
        return self._batch

    def hooks(self, edits: list[Edit]) -> tuple[HookSet, list[HookStats], list[HookStats]]:
        """A hook set with every edit installed, each edit's stats, and each hook point's stats.

        Edits of one hook point share one hook and apply in order; a point's stats say what its edits
        did together (a cancelling pair changes nothing).
        """
        hooks = HookSet(self.model.hf_model)
        stats = [HookStats(edit.point.name) for edit in edits]
        groups: dict[str, list[tuple[Edit, HookStats]]] = {}
        for edit, stat in zip(edits, stats, strict=True):
            groups.setdefault(edit.point.name, []).append((edit, stat))
        points = [HookStats(name) for name in groups]
        for group, together in zip(groups.values(), points, strict=True):
            hooks.add(group[0][0].point, functools.partial(self._apply, group, together))
        return hooks, stats, points

    def _apply(self, group: list[tuple[Edit, HookStats]], together: HookStats, view: torch.Tensor) -> torch.Tensor:
        new = apply_in_order(group, view, self.batch())
        together.fired += 1
        if not together.changed:
            if len(group) == 1:
                together.changed = group[0][1].changed
            else:
                together.changed = not close(new, view if new.shape == view.shape else view.expand_as(new))
        return new

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
            hooks = HookSet(self.model.hf_model)
            readout = self.readout(metric, hooks)

            def on_batch(batch, logits):
                read = readout(logits)
                reference = references[len(values)] if references is not None else metric.reference(read, batch)
                values.append(metric.read(read, batch, reference))
                own.append(reference)
                top1.append(top1_tokens(logits, batch))

            self.run(prompts, hooks, on_batch)
            return to_numpy(values, metric), own if metric.needs_reference else None, np.concatenate(top1)

        return self.cache.get(key, compute)

    def readout(self, metric: Metric, hooks: HookSet) -> Callable[[torch.Tensor], torch.Tensor]:
        """The logits ``metric`` reads in a pass with ``hooks``, from the model's: the same logits, or
        for a logit-lens metric the lens of the site it reads (captured by a hook added after every
        edit, so it sees them)."""
        if metric.lens is None:
            return lambda logits: logits
        seen: list[torch.Tensor] = []
        hooks.add(self.model.resolve(metric.lens), seen.append)  # returns None: a read, not an edit
        return lambda logits: self.model.unembed(seen.pop())

    def capture(self, prompts: Prompts, point: ResolvedSite) -> torch.Tensor:
        """The site's activation on every prompt, padded to ``[n, max_len, ...]``."""
        return self.capture_all(prompts, [point])[0]

    def capture_all(self, prompts: Prompts, points: list[ResolvedSite]) -> list[torch.Tensor]:
        """Several sites' activations, from one clean pass for all those not yet cached."""
        keys = [("capture", self.eager, prompts.fingerprint, point.name) for point in points]
        found = {key: value for key, (hit, value) in ((key, self.cache.lookup(key)) for key in keys) if hit}
        missing = {key: point for key, point in zip(keys, points, strict=True) if key not in found}
        if missing:
            hooks = HookSet(self.model.hf_model)
            stores = {key: self.reader(prompts, point, hooks) for key, point in missing.items()}
            self.read(prompts, hooks, [(missing[key], stats) for key, (_, stats) in stores.items()])
            for key, (store, stats) in stores.items():
                check_fired([stats], self.passes(prompts))
                found[key] = self.cache.get(key, functools.partial(operator.getitem, store, 0))
        return [found[key] for key in keys]

    def reader(self, prompts: Prompts, point: ResolvedSite, hooks: HookSet) -> tuple[list[torch.Tensor], HookStats]:
        """Add to ``hooks`` a read of ``point`` into a padded ``[n, max_len, ...]`` store (filled by the run)."""
        store: list[torch.Tensor] = []

        def read(view):
            if not store:
                store.append(view.new_zeros(_padded_shape(len(prompts), prompts.tokens.shape[1], view, point)))
            _write_padded(store[0], self.batch().index.to(view.device), view, point)

        return store, hooks.add(point, read)

    def mean(self, prompts: Prompts, point: ResolvedSite, per_position: bool) -> torch.Tensor:
        """Mean activation over real (non-padding) tokens: per position ``[max_len, ...]`` or pooled."""
        return self.mean_all(prompts, [point], per_position)[0]

    def mean_all(self, prompts: Prompts, points: list[ResolvedSite], per_position: bool) -> list[torch.Tensor]:
        """Several sites' means (see :meth:`mean`), from one pass for all those not yet cached."""
        keys = [("mean", self.eager, prompts.fingerprint, point.name, per_position) for point in points]
        found = {key: value for key, (hit, value) in ((key, self.cache.lookup(key)) for key in keys) if hit}
        missing = {key: point for key, point in zip(keys, points, strict=True) if key not in found}
        if missing:
            hooks = HookSet(self.model.hf_model)
            sums = {key: self._summer(prompts, point, per_position, hooks) for key, point in missing.items()}
            self.read(prompts, hooks, [(missing[key], stats) for key, (_, stats) in sums.items()])
            for key, (total, stats) in sums.items():
                check_fired([stats], self.passes(prompts))
                found[key] = self.cache.get(key, functools.partial(_mean_of, total))
        return [found[key] for key in keys]

    def _summer(
        self, prompts: Prompts, point: ResolvedSite, per_position: bool, hooks: HookSet
    ) -> tuple[list, HookStats]:
        """Add to ``hooks`` a read of ``point`` that sums its real-token values and their count (filled
        by the run as ``[total, count, dtype]``)."""
        width = prompts.tokens.shape[1]
        sums: list = []

        def read(view):
            batch = self.batch()
            real = batch.attention_mask.to(device=view.device, dtype=torch.float64)
            real = real.view(*real.shape, *[1] * (view.dim() - 2))
            values = view.new_zeros(_padded_shape(len(batch), width, view, point), dtype=torch.float64)
            _write_padded(values, torch.arange(len(batch), device=view.device), view.to(torch.float64) * real, point)
            counts = torch.zeros(len(batch), width, *[1] * (view.dim() - 2), dtype=torch.float64, device=view.device)
            counts[:, : view.shape[1]] = real
            dims = 0 if per_position else (0, 1)
            total, count = values.sum(dims), counts.sum(dims)
            if sums:
                total, count = total + sums[0], count + sums[1]
            sums[:] = [total, count, view.dtype]

        return sums, hooks.add(point, read)

    def captured(self, prompts: Prompts, edits: list[Edit], points: list[ResolvedSite]) -> list[torch.Tensor]:
        """Activations at ``points`` (each ``[n, max_len, ...]``) with every edit installed."""
        hooks, stats, _ = self.hooks(edits)
        stores = [self.reader(prompts, point, hooks) for point in points]
        self.run(prompts, hooks, lambda batch, logits: None)
        check_fired(stats + [read for _, read in stores], self.passes(prompts))
        return [store[0] for store, _ in stores]

    def intervened(
        self, prompts: Prompts, edits: list[Edit], metric: Metric, references: list | None
    ) -> tuple[np.ndarray, np.ndarray, list[HookStats], list[HookStats]]:
        """Metric and top-1 token per prompt with every edit installed; also each edit's and each hook
        point's stats."""
        hooks, stats, together = self.hooks(edits)
        readout = self.readout(metric, hooks)
        values: list[torch.Tensor] = []
        top1: list[np.ndarray] = []

        def on_batch(batch, logits):
            reference = references[len(values)] if references is not None else None
            values.append(metric.read(readout(logits), batch, reference))
            top1.append(top1_tokens(logits, batch))

        self.run(prompts, hooks, on_batch)
        return to_numpy(values, metric), np.concatenate(top1), stats, together


def apply_in_order(group: list[tuple[Edit, HookStats]], view: torch.Tensor, batch: Prompts) -> torch.Tensor:
    """The edits of one hook point applied in order to ``view``. An edit that sets entries counts as
    changed when they differ from the original activation (setting an entry to the value another edit
    already gave it is not a no-op); one that adds (a steer) when it changed what it was given (a zero
    steer next to another steer is)."""
    new = view
    for edit, stats in group:
        before, (new, select) = new, apply(edit, new, batch)
        stats.fired += 1
        if not stats.changed:
            base = before if edit.adds else view
            base = base if new.shape == base.shape else base.expand_as(new)
            if select is None or base is before:  # entries outside the selection are ``before``'s
                stats.changed = not torch.equal(new, base)
            else:
                stats.changed = bool(((new != base) & select).any())
    return new


def check_fired(stats: list[HookStats], passes: int) -> None:
    """Raise :class:`HookNotFiredError` unless every hook fired once per forward pass."""
    for s in stats:
        if s.fired < passes:
            raise HookNotFiredError(
                f"the hook on {s.site} fired {s.fired} times in {passes} forward passes; the model never "
                "computes that site as named. Check model.sites() or the raw module path"
            )


def top1_tokens(logits: torch.Tensor, batch: Prompts) -> np.ndarray:
    """The top-1 token at each prompt's answer position."""
    rows = torch.arange(len(batch), device=logits.device)
    return logits[rows, batch.answer_positions.to(logits.device)].argmax(-1).cpu().numpy()


def to_numpy(values: list[torch.Tensor], metric: Metric) -> np.ndarray:
    """Per-batch metric values as one float64 array, refusing NaN and infinities."""
    array = torch.cat([v.detach().float().cpu().reshape(-1) for v in values]).numpy().astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(array))
    if len(bad):
        raise MetricError(
            f"metric {metric.name} gave {array[bad[0]]} on prompt {bad[0]} ({len(bad)} non-finite values); "
            "a claim cannot be judged on NaN or infinite values"
        )
    return array


def _metric_identity(metric: Metric) -> object:
    """A cache key that tells apart user functions and same-named classes from different modules."""
    if isinstance(metric, Custom):
        return _Identity(metric.fn)
    return (type(metric), metric.key())


def _mean_of(sums: list) -> torch.Tensor:
    """The mean from a :meth:`Engine._summer` read's ``[total, count, dtype]``."""
    total, count, dtype = sums
    return (total / count).to(dtype)


class _Identity:
    """Hashes and compares by object identity; holds the object so its id is never reused."""

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj


def _padded_shape(n: int, width: int, view: torch.Tensor, point: ResolvedSite) -> tuple[int, ...]:
    """``[n, width, ...]`` storage for a site's activations; patterns also pad their key axis."""
    last = width if point.kind == "pattern" else view.shape[-1]
    return (n, width, *view.shape[2:-1], last)


def _write_padded(store: torch.Tensor, rows: torch.Tensor, view: torch.Tensor, point: ResolvedSite) -> None:
    length = view.shape[1]
    if point.kind == "pattern":
        store[rows, :length, ..., :length] = view
    else:
        store[rows, :length] = view
