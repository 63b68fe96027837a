"""The residual stream as a graph: which components write it, and where each site reads it.

In a pre-LayerNorm transformer the residual stream at any point is the sum of the token embedding
and the outputs of every earlier attention layer and MLP. Path patching and causal scrubbing both
work on that sum: they hold every writer at a chosen value (its clean value, or its value on
another prompt) and let only the claimed paths carry a change. Writers are addressed by their
sites: ``hook_embed``, ``blocks.L.attn.hook_z`` (per head, before ``W_O``) and
``blocks.L.hook_mlp_out``.

Order is counted in *stages*: the embedding writes at stage 0, attention of layer ``L`` at
``2L + 1`` and its MLP at ``2L + 2``. A reader sees every writer of an earlier stage.
"""

from __future__ import annotations

import re

from mitest.errors import SiteError
from mitest.model.model import Model
from mitest.spec.sites import Site

EMBED = "hook_embed"
LOGITS = "logits"  # the residual stream's end, read by the unembedding

_LAYER_SITE = re.compile(r"blocks\.(\d+)\.(.+)")
_HEAD_INPUTS = ("attn.hook_q", "attn.hook_k", "attn.hook_v")
_WRITER_KINDS = ("attn.hook_z", "hook_mlp_out")


def check_supported(model: Model, what: str) -> None:
    """Raise unless ``model`` is a pre-LayerNorm residual architecture mitest has a site table for."""
    if model.family is None or model.family.name == "bert":
        name = "no site table" if model.family is None else "post-LayerNorm (BERT)"
        raise SiteError(
            f"{what} needs a pre-LayerNorm residual-stream model (GPT-2, GPT-NeoX, Llama family); "
            f"{type(model.hf_model).__name__} has {name}"
        )


def writers(model: Model) -> list[str]:
    """Every writer site of ``model`` in forward order: the embedding, then per layer attention and MLP."""
    return [EMBED] + [f"blocks.{layer}.{kind}" for layer in range(model.layout()[1].n_layers) for kind in _WRITER_KINDS]


def write_stage(name: str) -> int:
    """The stage at which writer site ``name`` adds to the residual stream."""
    if name == EMBED:
        return 0
    layer, kind = _layer_site(name)
    if kind == "attn.hook_z":
        return 2 * layer + 1
    if kind == "hook_mlp_out":
        return 2 * layer + 2
    raise SiteError(
        f"{name} does not write to the residual stream; use an attention head (mt.heads('1.4')), "
        "an MLP (mt.mlp(L)) or the embedding ('hook_embed')"
    )


def read_stage(model: Model, name: str) -> int:
    """The last writer stage a reader site sees (it reads the sum of every writer up to it)."""
    if name == LOGITS:
        return 2 * model.layout()[1].n_layers
    layer, kind = _layer_site(name)
    parallel = not model.layout()[0].has_resid_mid(model.config)  # attention and MLP read the same stream
    stages = {
        "hook_resid_pre": 2 * layer,
        "attn.hook_q": 2 * layer,
        "attn.hook_k": 2 * layer,
        "attn.hook_v": 2 * layer,
        "hook_resid_mid": 2 * layer + 1,
        "hook_mlp_in": 2 * layer + (0 if parallel else 1),
        "hook_resid_post": 2 * layer + 2,
    }
    if kind not in stages:
        raise SiteError(
            f"{name} does not read the residual stream as a whole; name a head input (mt.heads('1.4', kind='q')), "
            "a head (all its inputs), an MLP (mt.mlp(L)), a residual point or 'logits'"
        )
    return stages[kind]


def reader_sites(model: Model, site: Site) -> list[Site]:
    """The sites whose values are a receiver's inputs: a head's q, k and v; an MLP's input; a residual."""
    if site.name == LOGITS:
        return [Site(f"blocks.{model.layout()[1].n_layers - 1}.hook_resid_post", positions=site.positions)]
    layer, kind = _layer_site(site.name)
    if kind == "attn.hook_z":
        check_separate_heads(model, f"{site} as a receiver")
        return [Site(f"blocks.{layer}.{part}", site.index, site.positions) for part in _HEAD_INPUTS]
    if kind in ("hook_mlp_out", "mlp.hook_post", "mlp.hook_pre"):
        if site.index is not None:
            raise SiteError(
                f"{site}: an MLP's neurons share one input, so a path cannot reach some neurons and not others; "
                f"use the whole MLP, mt.mlp({layer})"
            )
        return [Site(f"blocks.{layer}.hook_mlp_in", positions=site.positions)]
    read_stage(model, site.name)  # raises for sites that are not readers
    return [site]


def check_separate_heads(model: Model, what: str) -> None:
    """Raise on grouped-query models, where a head's keys and values are shared with other heads."""
    _, dims = model.layout()
    if dims.n_kv_heads != dims.n_heads:
        raise SiteError(
            f"{what}: this model shares each key/value head among {dims.n_heads // dims.n_kv_heads} query heads, "
            "so one head's keys and values cannot be reached alone. Name inputs separately: "
            "mt.heads(..., kind='q') for query heads and kind='k' / 'v' with the shared key/value head's index"
        )


def _layer_site(name: str) -> tuple[int, str]:
    match = _LAYER_SITE.fullmatch(name)
    if match is None:
        raise SiteError(f"{name} is not a per-layer site (blocks.L.…); see model.sites()")
    return int(match.group(1)), match.group(2)
