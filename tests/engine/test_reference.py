"""mitest's interventions against hand-written plain-torch references, on every family.

The references never go through mitest's site table: they name each family's modules explicitly
and edit the attention computation directly (weights of the output projection, or a raw hook).
"""

from __future__ import annotations

import copy

import pytest
import torch

import mitest as mt
from tests.builders import build, random_prompts

LAYER, HEAD, D_HEAD = 1, 2, 8

# The module that multiplies the concatenated head outputs by W_O, per family.
OUT_PROJ = {
    "gpt2": "transformer.h.{l}.attn.c_proj",
    "gpt_neox": "gpt_neox.layers.{l}.attention.dense",
    "gpt_neox_serial": "gpt_neox.layers.{l}.attention.dense",
    "llama": "model.layers.{l}.self_attn.o_proj",
    "mistral": "model.layers.{l}.self_attn.o_proj",
    "qwen2": "model.layers.{l}.self_attn.o_proj",
    "bert": "bert.encoder.layer.{l}.attention.output.dense",
}


def _logits(hf_model, prompts):
    with torch.no_grad():
        return hf_model(input_ids=prompts.tokens).logits


def _metric_logits(store):
    """A custom metric that keeps the full logits so tests can compare them exactly.

    The intervened run is the last one, so ``torch.cat(store)[-n:]`` holds its logits.
    """

    def keep(logits, batch):
        store.append(logits.detach().clone())
        return logits[:, -1, 0]

    return keep


def _head_columns(family: str, module: torch.nn.Module) -> torch.Tensor:
    # GPT-2's Conv1D stores weight as [in, out]; nn.Linear as [out, in].
    cols = slice(HEAD * D_HEAD, (HEAD + 1) * D_HEAD)
    return module.weight.data[cols, :] if family == "gpt2" else module.weight.data[:, cols]


def test_zero_ablating_a_head_matches_zeroing_its_output_weights(family):
    hf_model = build(family)
    prompts = random_prompts(corrupted=False)
    reference = copy.deepcopy(hf_model)
    _head_columns(family, reference.get_submodule(OUT_PROJ[family].format(l=LAYER))).zero_()
    expected = _logits(reference, prompts)

    seen = []
    mt.measure(mt.Model.from_hf(hf_model), prompts, mt.ablate(mt.head(LAYER, HEAD)), _metric_logits(seen))
    got = torch.cat(seen)[-len(prompts) :]
    assert not torch.allclose(expected, _logits(hf_model, prompts), atol=1e-3), "ablation must matter here"
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_mean_ablating_a_head_matches_a_raw_torch_hook(family):
    hf_model = build(family)
    prompts = random_prompts(corrupted=False)
    out_proj = hf_model.get_submodule(OUT_PROJ[family].format(l=LAYER))
    cols = slice(HEAD * D_HEAD, (HEAD + 1) * D_HEAD)

    captured = []
    handle = out_proj.register_forward_pre_hook(lambda m, args: captured.append(args[0][..., cols].clone()))
    try:
        _logits(hf_model, prompts)
    finally:
        handle.remove()
    mean = captured[0].mean(0)  # per position, over prompts

    def replace(module, args):
        x = args[0].clone()
        x[..., cols] = mean
        return (x,)

    handle = out_proj.register_forward_pre_hook(replace)
    try:
        expected = _logits(hf_model, prompts)
    finally:
        handle.remove()

    seen = []
    mt.measure(mt.Model.from_hf(hf_model), prompts, mt.ablate(mt.head(LAYER, HEAD), "mean"), _metric_logits(seen))
    torch.testing.assert_close(torch.cat(seen)[-len(prompts) :], expected, atol=1e-5, rtol=0)


def test_zeroing_a_heads_pattern_equals_zeroing_its_output(family):
    hf_model = build(family)
    model, prompts = mt.Model.from_hf(hf_model), random_prompts(corrupted=False)
    by_pattern, by_z = [], []
    mt.measure(model, prompts, mt.ablate(mt.head(LAYER, HEAD, "pattern")), _metric_logits(by_pattern))
    mt.measure(model, prompts, mt.ablate(mt.head(LAYER, HEAD, "z")), _metric_logits(by_z))
    torch.testing.assert_close(
        torch.cat(by_pattern)[-len(prompts) :], torch.cat(by_z)[-len(prompts) :], atol=1e-5, rtol=0
    )


def test_zeroing_a_value_head_zeroes_every_query_head_that_reads_it(family):
    hf_model = build(family)
    model, prompts = mt.Model.from_hf(hf_model), random_prompts(corrupted=False)
    dims = model.dims
    group = dims.n_heads // dims.n_kv_heads
    kv_head = 0
    by_v, by_z = [], []
    mt.measure(model, prompts, mt.ablate(mt.head(LAYER, kv_head, "v")), _metric_logits(by_v))
    query_heads = [f"{LAYER}.{h}" for h in range(kv_head * group, (kv_head + 1) * group)]
    mt.measure(model, prompts, mt.ablate(mt.heads(*query_heads)), _metric_logits(by_z))
    torch.testing.assert_close(torch.cat(by_v)[-len(prompts) :], torch.cat(by_z)[-len(prompts) :], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_projecting_out_a_basis_direction_zeroes_that_coordinate(family):
    hf_model = build(family)
    model, prompts = mt.Model.from_hf(hf_model), random_prompts(corrupted=False)
    coordinate = 5
    layer_module = {"gpt2": "transformer.h.0", "llama": "model.layers.0", "bert": "bert.encoder.layer.0"}[family]

    def zero_coordinate(module, args, output):
        output = output.clone()
        output[..., coordinate] = 0
        return output

    handle = hf_model.get_submodule(layer_module).register_forward_hook(zero_coordinate)
    try:
        expected = _logits(hf_model, prompts)
    finally:
        handle.remove()
    basis = torch.zeros(32)
    basis[coordinate] = 3.0  # length does not matter for projection
    seen = []
    mt.measure(model, prompts, mt.ablate(mt.direction("blocks.1.hook_resid_pre", basis)), _metric_logits(seen))
    torch.testing.assert_close(torch.cat(seen)[-len(prompts) :], expected, atol=1e-5, rtol=0)
