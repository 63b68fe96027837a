"""mt.Model: wrapping, loading from a local directory, site names and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mitest as mt
from tests.builders import build, random_prompts, word_tokenizer


def test_clean_numbers_are_identical_to_calling_the_model_directly(model, prompts):
    with torch.no_grad():
        logits = model.hf_model(input_ids=prompts.tokens).logits
    expected = logits[torch.arange(len(prompts)), -1]
    expected = (expected.gather(1, prompts.answers[:, None]) - expected.gather(1, prompts.wrong[:, None]))[:, 0]
    effect = mt.measure(model, prompts, mt.ablate(mt.heads("0.0")), mt.metrics.logit_diff)
    np.testing.assert_array_equal(effect.clean, expected.double().numpy())


def test_from_hf_shares_weights_instead_of_copying(hf_model):
    model = mt.Model.from_hf(hf_model)
    assert model.hf_model is hf_model
    assert next(model.hf_model.parameters()).data_ptr() == next(hf_model.parameters()).data_ptr()


def test_load_reads_a_local_safetensors_directory_with_tokenizer(tmp_path):
    hf_model = build("gpt2")
    hf_model.save_pretrained(tmp_path)
    words = [f"w{i}" for i in range(60)]
    word_tokenizer(words).save_pretrained(tmp_path)
    assert list(tmp_path.glob("*.safetensors")) and not list(tmp_path.glob("*.bin"))

    loaded = mt.Model.load(tmp_path)
    tokens = random_prompts().tokens
    with torch.no_grad():
        torch.testing.assert_close(loaded.hf_model(tokens).logits, hf_model(tokens).logits, atol=0, rtol=0)
    assert loaded.tokenizer("w3 w5")["input_ids"] == [5, 7]
    prompts = mt.Prompts(["w1 w2 w3", "w4 w5"], answers=["w9", "w8"], wrong=["w7", "w6"], tokenizer=loaded.tokenizer)
    effect = mt.measure(loaded, prompts, mt.ablate(mt.heads("1.0")), mt.metrics.logit_diff)
    assert effect.n == 2


def test_load_gives_the_same_model_for_every_family(family, tmp_path):
    hf_model = build(family)
    hf_model.save_pretrained(tmp_path)
    loaded = mt.Model.load(tmp_path)
    assert type(loaded.hf_model) is type(hf_model)
    assert loaded.sites() == mt.Model.from_hf(hf_model).sites()
    tokens = random_prompts().tokens
    with torch.no_grad():
        torch.testing.assert_close(loaded.hf_model(tokens).logits, hf_model(tokens).logits, atol=0, rtol=0)


def test_load_refuses_pickle_checkpoints(tmp_path):
    build("gpt2").config.save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(mt.ModelLoadError, match="pytorch_model.bin.*pickle"):
        mt.Model.load(tmp_path)


def test_load_without_a_config_is_a_clear_error(tmp_path):
    with pytest.raises(mt.ModelLoadError, match="no config.json"):
        mt.Model.load(tmp_path)


def test_sites_follow_the_transformerlens_names(model):
    sites = model.sites()
    for layer in range(2):
        for name in (
            "hook_resid_pre",
            "attn.hook_z",
            "attn.hook_pattern",
            "attn.hook_q",
            "attn.hook_k",
            "attn.hook_v",
            "hook_attn_out",
            "mlp.hook_post",
            "hook_mlp_out",
            "hook_resid_post",
        ):
            assert f"blocks.{layer}.{name}" in sites
    assert "hook_embed" in sites
    assert len(sites) == len(set(sites))


def test_resid_mid_exists_only_without_a_parallel_residual():
    assert "blocks.0.hook_resid_mid" not in mt.Model.from_hf(build("gpt_neox")).sites()
    assert "blocks.0.hook_resid_mid" in mt.Model.from_hf(build("gpt_neox_serial")).sites()


def test_grouped_query_models_expose_shared_key_value_heads():
    model = mt.Model.from_hf(build("llama"))
    assert model.resolve("blocks.0.attn.hook_k").components == 2
    assert model.resolve("blocks.0.attn.hook_z").components == 4
    with pytest.raises(mt.SiteError, match="2 components"):
        mt.measure(model, random_prompts(), mt.ablate(mt.head(0, 3, "k")), mt.metrics.logit_diff)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("blocks.1.attn.hook_zz", "closest: blocks.1.attn.hook_z"),
        ("blocks.7.attn.hook_z", "layer 7 does not exist.*0..1"),
        ("blocks.one.hook_resid_pre", "layer must be a number"),
        ("blocks.0.hook_resid_psot", "closest: blocks.0.hook_resid_post"),
    ],
)
def test_unknown_sites_list_the_closest_names(model, name, message):
    with pytest.raises(mt.SiteError, match=message):
        model.resolve(name)


def test_a_head_that_does_not_exist_is_a_clear_error(model, prompts):
    with pytest.raises(mt.SiteError, match="index 9 does not exist"):
        mt.measure(model, prompts, mt.ablate(mt.head(0, 9)), mt.metrics.logit_diff)
    with pytest.raises(mt.SiteError, match="no heads or neurons"):
        mt.measure(model, prompts, mt.ablate(mt.site("blocks.0.hook_resid_post", 3)), mt.metrics.logit_diff)


def test_neurons_index_the_mlp_hidden_layer(model, prompts):
    effect = mt.measure(model, prompts, mt.ablate(mt.neurons(0, 1, 5)), mt.metrics.logit_diff, strict=True)
    assert abs(effect.delta).max() > 0
    with pytest.raises(mt.SiteError, match="index 999"):
        mt.measure(model, prompts, mt.ablate(mt.neurons(0, 999)), mt.metrics.logit_diff)


def test_cache_is_dropped_when_weights_change(prompts):
    model = mt.Model.from_hf(build("gpt2"))
    first = mt.measure(model, prompts, mt.ablate(mt.heads("0.0")), mt.metrics.logit_diff)
    with torch.no_grad():
        model.hf_model.transformer.h[1].mlp.c_proj.weight.mul_(2.0)
    second = mt.measure(model, prompts, mt.ablate(mt.heads("0.0")), mt.metrics.logit_diff)
    assert not np.allclose(first.clean, second.clean)


def test_the_revision_does_not_depend_on_where_the_model_was_saved(tmp_path):
    """Same weights saved in two directories (and so with two _name_or_path values) hash the same."""
    source = build("gpt2")
    for name in ("a", "b"):
        source.save_pretrained(tmp_path / name)
    first, second = mt.Model.load(tmp_path / "a"), mt.Model.load(tmp_path / "b")
    assert first.config._name_or_path != second.config._name_or_path
    assert first.revision == second.revision
    with torch.no_grad():
        second.hf_model.transformer.wte.weight[0, 0] += 1.0
    assert first.revision != second.revision


@pytest.mark.parametrize(
    "edit",
    [
        lambda w: w.data.add_(1e-3),  # .data edits never bump torch's version counter
        lambda w: w.data.__setitem__((0, 0), w.data[0, 0] + 1.0),
        lambda w: w.data.neg_(),  # a norm of the sample would not see a sign flip
        lambda w: w.data.copy_(w.data.flip(0)),  # nor a reordering of its entries
    ],
    ids=["add", "one-entry", "sign-flip", "reorder"],
)
def test_weights_version_sees_edits_through_data(edit):
    model = mt.Model.from_hf(build("gpt2"))
    weight = model.hf_model.transformer.wte.weight
    before = model.weights_version()
    assert model.weights_version() == before
    edit(weight)
    assert model.weights_version() != before


def test_weights_version_sees_a_replaced_module_and_a_buffer_edit():
    model = mt.Model.from_hf(build("llama"))
    before = model.weights_version()
    model.hf_model.model.rotary_emb.inv_freq.data.mul_(2.0)
    assert model.weights_version() != before
    changed = model.weights_version()
    layer = model.hf_model.model.layers[0].mlp
    layer.down_proj = torch.nn.Linear(layer.down_proj.in_features, layer.down_proj.out_features, bias=False)
    assert model.weights_version() != changed


def test_a_data_edit_between_two_measure_calls_changes_the_result(prompts):
    model = mt.Model.from_hf(build("gpt2"))
    first = mt.measure(model, prompts, mt.ablate(mt.heads("0.0")), mt.metrics.logit_diff)
    model.hf_model.transformer.h[1].mlp.c_proj.weight.data[...] *= 2.0
    second = mt.measure(model, prompts, mt.ablate(mt.heads("0.0")), mt.metrics.logit_diff)
    fresh = mt.measure(mt.Model.from_hf(model.hf_model), prompts, mt.ablate(mt.heads("0.0")), mt.metrics.logit_diff)
    assert not np.allclose(first.clean, second.clean) and not np.allclose(first.intervened, second.intervened)
    np.testing.assert_array_equal(second.clean, fresh.clean)
    np.testing.assert_array_equal(second.intervened, fresh.intervened)


def test_runs_switch_a_model_put_in_training_mode_between_calls_to_eval(prompts):
    hf_model = build("gpt2")
    hf_model.config.resid_pdrop = hf_model.config.embd_pdrop = hf_model.config.attn_pdrop = 0.5
    for module in hf_model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    model = mt.Model.from_hf(hf_model)
    in_eval = mt.measure(model, prompts, mt.ablate(mt.heads("0.0")), mt.metrics.logit_diff)
    hf_model.train()
    hf_model.transformer.h[0].eval()  # a mix of modes comes back as it was
    flags = [m.training for m in hf_model.modules()]
    in_training = mt.measure(mt.Model.from_hf(hf_model), prompts, mt.ablate(mt.heads("0.0")), mt.metrics.logit_diff)
    np.testing.assert_array_equal(in_eval.intervened, in_training.intervened)
    assert [m.training for m in hf_model.modules()] == flags
