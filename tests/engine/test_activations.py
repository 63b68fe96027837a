"""mt.activations: reading a site's clean activations, checked against a raw forward hook."""

import pytest
import torch

import mitest as mt
from tests.builders import VOCAB, build


@pytest.fixture(scope="module")
def gpt2():
    return mt.Model.from_hf(build("gpt2"))


@pytest.fixture(scope="module")
def ragged():
    """Prompts of lengths 5, 8 and 6 (right-padded), to check padding and per-prompt positions."""
    g = torch.Generator().manual_seed(3)
    return mt.Prompts([torch.randint(1, VOCAB, (k,), generator=g).tolist() for k in (5, 8, 6)])


def _raw_mlp_out(model: mt.Model, prompts: mt.Prompts, layer: int) -> list[torch.Tensor]:
    """Each prompt run alone with a plain hook on the MLP's output."""
    outputs = []
    handle = model.hf_model.transformer.h[layer].mlp.register_forward_hook(
        lambda module, args, out: outputs.append(out.detach()[0])
    )
    try:
        with torch.no_grad():
            for row in range(len(prompts)):
                model.hf_model(prompts.ids[row : row + 1, : prompts.lengths[row]])
    finally:
        handle.remove()
    return outputs


def test_activations_match_a_raw_hook_and_are_zero_at_padding(gpt2, ragged):
    values = mt.activations(gpt2, ragged, "blocks.1.hook_mlp_out", batch_size=2)
    assert values.shape == (3, 8, gpt2.dims.d_model) and values.dtype == torch.float32
    for row, raw in enumerate(_raw_mlp_out(gpt2, ragged, 1)):
        length = int(ragged.lengths[row])
        torch.testing.assert_close(values[row, :length], raw, atol=1e-5, rtol=1e-5)
        assert bool((values[row, length:] == 0).all())


def test_one_position_per_prompt_and_component_indices(gpt2, ragged):
    full = mt.activations(gpt2, ragged, "blocks.0.attn.hook_z")
    last = mt.activations(gpt2, ragged, mt.heads("0.2", "0.3").at("last"))
    assert last.shape == (3, 2, gpt2.dims.d_head)
    for row in range(3):
        torch.testing.assert_close(last[row], full[row, int(ragged.lengths[row]) - 1, 2:4])
    neurons = mt.activations(gpt2, ragged, mt.neurons(1, 3, 7).at(0))
    every_neuron = mt.activations(gpt2, ragged, "blocks.1.mlp.hook_post")
    torch.testing.assert_close(neurons, every_neuron[:, 0, [3, 7]])


def test_the_result_is_a_copy_the_cache_does_not_share(gpt2, ragged):
    first = mt.activations(gpt2, ragged, "blocks.0.hook_resid_post")
    first.zero_()
    assert mt.activations(gpt2, ragged, "blocks.0.hook_resid_post").abs().sum() > 0


def test_bad_sites_get_clear_errors(gpt2, ragged):
    with pytest.raises(mt.SiteError, match="closest|blocks.0.hook_resid_post"):
        mt.activations(gpt2, ragged, "blocks.0.hook_resid_pots")
    with pytest.raises(mt.SiteError, match="one position per prompt"):
        mt.activations(gpt2, ragged, mt.site("blocks.0.hook_resid_post").at("second_half"))
    with pytest.raises(mt.SiteError, match="drop the direction"):
        mt.activations(gpt2, ragged, mt.direction("blocks.0.hook_resid_post", torch.ones(gpt2.dims.d_model)))
    with pytest.raises(mt.PromptsError):
        mt.activations(gpt2, [[1, 2, 3]], "blocks.0.hook_resid_post")
    with pytest.raises(mt.SiteError, match="one site at a time"):
        mt.activations(gpt2, ragged, mt.heads("0.1", "1.1"))
    with pytest.raises(ValueError, match="batch_size"):
        mt.activations(gpt2, ragged, "blocks.0.hook_resid_post", batch_size=0)


def test_attention_patterns_are_read_per_query_position(gpt2, ragged):
    """Patterns come back as [n, query, head, key]; each real query's row sums to 1 over its keys."""
    pattern = mt.activations(gpt2, ragged, "blocks.0.attn.hook_pattern")
    assert pattern.shape == (3, 8, gpt2.dims.n_heads, 8)
    for row in range(3):
        length = int(ragged.lengths[row])
        sums = pattern[row, :length].sum(-1)
        torch.testing.assert_close(sums, torch.ones_like(sums))
        assert bool((pattern[row, length:] == 0).all())
