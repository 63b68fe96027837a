"""Where each TransformerLens-style site lives in each supported transformers architecture.

A family maps per-layer site names to ``(module path inside the layer, kind, view)``. ``kind`` says
whether the activation is the module's input, its output, or the attention pattern computed inside
it; ``view`` turns the raw tensor into the site's shape ``[batch, pos, ...]`` without copying, with
the component axis (heads or neurons) right after ``pos``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

View = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Dims:
    """Sizes read from a model config."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    d_mlp: int


@dataclass(frozen=True)
class ResolvedSite:
    """A resolved site: the module to hook, how, and how to view its tensor."""

    name: str
    module: nn.Module
    kind: str  # "input" | "output" | "pattern" | "residual_sum"
    view: View
    components: int | None = None  # size of the head/neuron axis, when the site has one
    addend: nn.Module | None = None  # for "residual_sum": the module whose input is the residual


@dataclass(frozen=True)
class LayerSite:
    path: str  # module path relative to the layer ("" is the layer itself)
    kind: str
    view: Callable[[Dims], View]
    components: Callable[[Dims], int] | None = None
    addend: str | None = None


def _residual_sum(attention: str, first_norm: str) -> LayerSite:
    """The residual stream between attention and MLP in a pre-LayerNorm block.

    It exists only as a local variable (``attn_out + resid_pre``), so mitest reads it as the
    attention output plus the residual entering the first LayerNorm, and writes it back through
    the attention output. Hooking the second LayerNorm's input instead changes only what the MLP
    sees, not the residual stream: that is ``hook_mlp_in``, as in TransformerLens.
    """
    return LayerSite(attention, "residual_sum", _same, addend=first_norm)


@dataclass(frozen=True)
class Layout:
    """How one architecture family lays out its modules (its site table)."""

    name: str
    model_types: tuple[str, ...]
    layers: str  # path of the layer ModuleList relative to the base model
    embeddings: dict[str, str]  # model-level site name -> module path relative to the base model
    layer_sites: dict[str, LayerSite]
    has_resid_mid: Callable[[object], bool] = lambda config: True
    final_norm: str | None = None  # module path of the norm before the unembedding (None: no logit lens)


def _same(dims: Dims) -> View:
    return lambda t: t


def _heads(count: Callable[[Dims], int]) -> Callable[[Dims], View]:
    """Split the last axis into ``count(dims)`` heads."""

    def make(dims: Dims) -> View:
        n = count(dims)
        return lambda t: t.unflatten(-1, (n, -1))

    return make


def _fused_qkv(part: int) -> Callable[[Dims], View]:
    """GPT-2's c_attn output: [q | k | v] along the last axis, each split into heads."""

    def make(dims: Dims) -> View:
        width = dims.d_model
        return lambda t: t[..., part * width : (part + 1) * width].unflatten(-1, (dims.n_heads, -1))

    return make


def _interleaved_qkv(part: int) -> Callable[[Dims], View]:
    """GPT-NeoX's query_key_value output: per head [q, k, v]."""
    return lambda dims: lambda t: t.unflatten(-1, (dims.n_heads, 3, -1))[..., part, :]


def _pattern(dims: Dims) -> View:
    return lambda t: t.permute(0, 2, 1, 3)  # [batch, head, q, k] -> [batch, q, head, k]


_N_HEADS = lambda d: d.n_heads  # noqa: E731
_N_KV = lambda d: d.n_kv_heads  # noqa: E731
_D_MLP = lambda d: d.d_mlp  # noqa: E731


def _attention_sites(attn: str, q: LayerSite, k: LayerSite, v: LayerSite, out_proj: str) -> dict[str, LayerSite]:
    return {
        "attn.hook_q": q,
        "attn.hook_k": k,
        "attn.hook_v": v,
        "attn.hook_z": LayerSite(out_proj, "input", _heads(_N_HEADS), _N_HEADS),
        "attn.hook_pattern": LayerSite(attn, "pattern", _pattern, _N_HEADS),
    }


def _proj(path: str, count: Callable[[Dims], int]) -> LayerSite:
    return LayerSite(path, "output", _heads(count), count)


GPT2 = Layout(
    name="gpt2",
    model_types=("gpt2",),
    layers="h",
    embeddings={"hook_embed": "wte", "hook_pos_embed": "wpe"},
    final_norm="ln_f",
    layer_sites={
        "hook_resid_pre": LayerSite("", "input", _same),
        **_attention_sites(
            "attn",
            LayerSite("attn.c_attn", "output", _fused_qkv(0), _N_HEADS),
            LayerSite("attn.c_attn", "output", _fused_qkv(1), _N_HEADS),
            LayerSite("attn.c_attn", "output", _fused_qkv(2), _N_HEADS),
            "attn.c_proj",
        ),
        "hook_attn_out": LayerSite("attn", "output", _same),
        "hook_resid_mid": _residual_sum("attn", "ln_1"),
        "hook_mlp_in": LayerSite("ln_2", "input", _same),
        "mlp.hook_pre": LayerSite("mlp.c_fc", "output", _same, _D_MLP),
        "mlp.hook_post": LayerSite("mlp.c_proj", "input", _same, _D_MLP),
        "hook_mlp_out": LayerSite("mlp", "output", _same),
        "hook_resid_post": LayerSite("", "output", _same),
    },
)

GPT_NEOX = Layout(
    name="gpt_neox",
    model_types=("gpt_neox",),
    layers="layers",
    embeddings={"hook_embed": "embed_in"},
    final_norm="final_layer_norm",
    layer_sites={
        "hook_resid_pre": LayerSite("", "input", _same),
        **_attention_sites(
            "attention",
            LayerSite("attention.query_key_value", "output", _interleaved_qkv(0), _N_HEADS),
            LayerSite("attention.query_key_value", "output", _interleaved_qkv(1), _N_HEADS),
            LayerSite("attention.query_key_value", "output", _interleaved_qkv(2), _N_HEADS),
            "attention.dense",
        ),
        "hook_attn_out": LayerSite("attention", "output", _same),
        # Only without the parallel residual does a residual point exist between attention and MLP.
        "hook_resid_mid": _residual_sum("attention", "input_layernorm"),
        "hook_mlp_in": LayerSite("post_attention_layernorm", "input", _same),
        "mlp.hook_pre": LayerSite("mlp.dense_h_to_4h", "output", _same, _D_MLP),
        "mlp.hook_post": LayerSite("mlp.dense_4h_to_h", "input", _same, _D_MLP),
        "hook_mlp_out": LayerSite("mlp", "output", _same),
        "hook_resid_post": LayerSite("", "output", _same),
    },
    has_resid_mid=lambda config: not getattr(config, "use_parallel_residual", False),
)

LLAMA = Layout(
    name="llama",
    model_types=("llama", "mistral", "qwen2"),
    layers="layers",
    embeddings={"hook_embed": "embed_tokens"},
    final_norm="norm",
    layer_sites={
        "hook_resid_pre": LayerSite("", "input", _same),
        **_attention_sites(
            "self_attn",
            _proj("self_attn.q_proj", _N_HEADS),
            _proj("self_attn.k_proj", _N_KV),
            _proj("self_attn.v_proj", _N_KV),
            "self_attn.o_proj",
        ),
        "hook_attn_out": LayerSite("self_attn", "output", _same),
        "hook_resid_mid": _residual_sum("self_attn", "input_layernorm"),
        "hook_mlp_in": LayerSite("post_attention_layernorm", "input", _same),
        "mlp.hook_post": LayerSite("mlp.down_proj", "input", _same, _D_MLP),
        "hook_mlp_out": LayerSite("mlp", "output", _same),
        "hook_resid_post": LayerSite("", "output", _same),
    },
)

# BERT is post-LayerNorm: as in TransformerLens, resid_mid and resid_post are the residual sums
# that enter each LayerNorm (their only reader), while resid_pre is the layer's (normalised) input.
BERT = Layout(
    name="bert",
    model_types=("bert",),
    layers="encoder.layer",
    embeddings={"hook_embed": "embeddings.word_embeddings", "hook_pos_embed": "embeddings.position_embeddings"},
    layer_sites={
        "hook_resid_pre": LayerSite("", "input", _same),
        **_attention_sites(
            "attention.self",
            _proj("attention.self.query", _N_HEADS),
            _proj("attention.self.key", _N_HEADS),
            _proj("attention.self.value", _N_HEADS),
            "attention.output.dense",
        ),
        "hook_attn_out": LayerSite("attention.output.dense", "output", _same),
        "hook_resid_mid": LayerSite("attention.output.LayerNorm", "input", _same),
        "mlp.hook_pre": LayerSite("intermediate.dense", "output", _same, _D_MLP),
        "mlp.hook_post": LayerSite("output.dense", "input", _same, _D_MLP),
        "hook_mlp_out": LayerSite("output.dense", "output", _same),
        "hook_resid_post": LayerSite("output.LayerNorm", "input", _same),
    },
)

LAYOUTS = (GPT2, GPT_NEOX, LLAMA, BERT)


def layout_for(config: object) -> Layout | None:
    """The family of a transformers config, or None when mitest has no site table for it."""
    model_type = getattr(config, "model_type", None)
    return next((f for f in LAYOUTS if model_type in f.model_types), None)


def dims_for(config: Any) -> Dims:
    """Read layer, head and width sizes from a transformers config."""
    n_heads = int(config.num_attention_heads)
    d_model = int(config.hidden_size)
    d_mlp = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * d_model
    return Dims(
        n_layers=int(config.num_hidden_layers),
        n_heads=n_heads,
        n_kv_heads=int(getattr(config, "num_key_value_heads", None) or n_heads),
        d_model=d_model,
        d_head=int(getattr(config, "head_dim", None) or d_model // n_heads),
        d_mlp=int(d_mlp),
    )
