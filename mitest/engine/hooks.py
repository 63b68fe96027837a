"""Hook lifetime: install edits on resolved sites, count that they fired, always remove them.

Every hook mitest installs goes through :class:`HookSet`, a context manager whose exit removes all
handles and restores every setting it changed, whether the forward pass returned, raised, or was
interrupted (``KeyboardInterrupt`` included). Attention patterns are reached through an eager
attention function registered with transformers; it is switched on only while a pattern site is used.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mitest.errors import SiteError
from mitest.model.layouts import ResolvedSite

# fn(view) -> replacement view, or None to only read the activation.
Edit = Callable[[torch.Tensor], "torch.Tensor | None"]

ATTENTION_NAME = "mitest_eager"
_PATTERN_EDITS: weakref.WeakKeyDictionary[nn.Module, list[Callable[[torch.Tensor], torch.Tensor | None]]] = (
    weakref.WeakKeyDictionary()
)


@dataclass
class HookStats:
    """What one hook or edit did: how often it fired and whether it changed anything. A :class:`HookSet`
    counts fires; whoever applies the edits (the engine) decides ``changed``."""

    site: str
    fired: int = 0
    changed: bool = False


class HookSet(contextlib.AbstractContextManager):
    """Edits to install together for one run; use as ``with HookSet(model) as hooks: ...``."""

    def __init__(self, model: nn.Module) -> None:
        self._model = model
        self._pending: list[tuple[ResolvedSite, Edit, HookStats]] = []
        self._stack = contextlib.ExitStack()

    def add(self, point: ResolvedSite, edit: Edit) -> HookStats:
        """Queue ``edit`` on ``point``; returns the stats object the hook will update."""
        stats = HookStats(point.name)
        self._pending.append((point, edit, stats))
        return stats

    @property
    def stats(self) -> list[HookStats]:
        """Every queued hook's stats, in the order they were added."""
        return [stats for _, _, stats in self._pending]

    def __enter__(self) -> HookSet:
        try:
            if any(point.kind == "pattern" for point, _, _ in self._pending):
                self._stack.enter_context(eager_attention(self._model))
            for point, edit, stats in self._pending:
                self._stack.enter_context(_install(point, _wrap(point, edit, stats)))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()


def _wrap(point: ResolvedSite, edit: Edit, stats: HookStats) -> Callable[[torch.Tensor], torch.Tensor | None]:
    def apply(raw: torch.Tensor) -> torch.Tensor | None:
        stats.fired += 1
        view = point.view(raw)
        new = edit(view)
        if new is None:
            return None
        if new.shape != view.shape:
            # A site shared across the batch (e.g. position embeddings, [1, pos, d]) becomes per-prompt.
            if raw.shape != view.shape or view.shape[0] != 1 or new.shape[1:] != view.shape[1:]:
                raise RuntimeError(f"edit of {point.name} produced shape {tuple(new.shape)} for {tuple(view.shape)}")
            return new.clone()
        out = raw.clone()
        point.view(out).copy_(new)
        return out

    return apply


def close(new: torch.Tensor, old: torch.Tensor) -> bool:
    """Whether ``new`` equals ``old`` up to a few roundings (edits that cancel leave rounding behind)."""
    new, old = new.detach(), old.detach()  # a comparison, never part of a gradient (attribution's offsets)
    if torch.equal(new, old):
        return True
    if not (new.is_floating_point() and old.is_floating_point()):
        return False
    tolerance = 16 * torch.finfo(old.dtype).eps
    scale = float(old.abs().max()) if old.numel() else 0.0
    if old.numel() and float((new - old).abs().max()) > 2 * tolerance * scale:
        return False  # beyond allclose's widest bound (atol + rtol * |old| <= 2 * tolerance * scale): far cheaper
    return bool(torch.allclose(new, old, rtol=tolerance, atol=tolerance * scale))


@contextlib.contextmanager
def _install(point: ResolvedSite, apply: Callable[[torch.Tensor], torch.Tensor | None]) -> Iterator[None]:
    module = point.module
    if point.kind == "pattern":
        edits = _PATTERN_EDITS.setdefault(module, [])
        edits.append(apply)
        try:
            yield
        finally:
            edits.remove(apply)
            if not edits:
                del _PATTERN_EDITS[module]
        return
    if point.kind == "input":
        first = _first_parameter(module)

        def pre_hook(mod, args, kwargs):
            if args:
                new = apply(args[0])
                return None if new is None else ((new, *args[1:]), kwargs)
            new = apply(kwargs[first])
            return None if new is None else (args, {**kwargs, first: new})

        handle = module.register_forward_pre_hook(pre_hook, with_kwargs=True)
    elif point.kind == "residual_sum":
        yield from _install_residual_sum(point, apply)
        return
    else:

        def hook(mod, args, output):
            if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
                new = apply(output[0])
                return None if new is None else (new, *output[1:])
            if not isinstance(output, torch.Tensor):
                raise SiteError(
                    f"{point.name} returns {type(output).__name__}, not a tensor; hook one of its submodules "
                    "(see model.sites() or hf_model.named_modules())"
                )
            return apply(output)

        handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _install_residual_sum(point: ResolvedSite, apply: Callable[[torch.Tensor], torch.Tensor | None]) -> Iterator[None]:
    """Expose ``output + residual`` where the residual is the input of ``point.addend``."""
    addend = point.addend
    assert addend is not None  # residual-sum points always name the module whose input is the residual
    residual: list[torch.Tensor] = []
    first = _first_parameter(addend)

    def remember(mod, args, kwargs):
        residual[:] = [args[0] if args else kwargs[first]]

    def hook(mod, args, output):
        out = output[0] if isinstance(output, tuple) else output
        total = out + residual[0]
        new = apply(total)
        if new is None:
            return None
        # Entries the edit left alone keep their exact output (no rounding through the sum and back).
        new = torch.where(new == total, out, new - residual[0])
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handles = [addend.register_forward_pre_hook(remember, with_kwargs=True)]
    try:
        handles.append(point.module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _first_parameter(module: nn.Module) -> str:
    """The name of ``module.forward``'s first argument (the one a pre-hook edits when passed by keyword)."""
    forward = module.forward
    function = getattr(forward, "__func__", None)
    if function is None:  # a plain function set on the instance
        return next(iter(inspect.signature(forward).parameters))
    return _first_argument(function)


@functools.cache
def _first_argument(method: Callable) -> str:
    return list(inspect.signature(method).parameters)[1]


@contextlib.contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Route every attention module of ``model`` through mitest's eager attention, then restore."""
    _register_attention()
    configs = {id(c): c for c in _configs(model)}.values()
    saved = [(c, c._attn_implementation_internal) for c in configs]
    try:
        for config, _ in saved:
            config._attn_implementation_internal = ATTENTION_NAME
        yield
    finally:
        for config, value in saved:
            config._attn_implementation_internal = value


def _configs(model: nn.Module) -> Iterator[Any]:
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation_internal"):
            yield config


def _eager_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention whose softmax pattern passes through the pattern hooks of ``module``."""
    if key.shape[1] != query.shape[1]:  # grouped-query attention: share each k/v head across queries
        groups = query.shape[1] // key.shape[1]
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        mask = attention_mask[:, :, :, : key.shape[-2]]
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask
    pattern = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    for apply in list(_PATTERN_EDITS.get(module, ())):
        new = apply(pattern)
        if new is not None:
            pattern = new
    pattern = nn.functional.dropout(pattern, p=dropout, training=module.training)
    output = torch.matmul(pattern, value).transpose(1, 2).contiguous()
    return output, pattern


def _register_attention() -> None:
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

    if ATTENTION_NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTENTION_NAME, _eager_attention_forward)
        AttentionMaskInterface.register(ATTENTION_NAME, ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    assert ATTENTION_NAME in ALL_ATTENTION_FUNCTIONS
