"""mt.Model.load and Model.from_hf refuse what they cannot load faithfully: each a ModelLoadError naming the file."""

from __future__ import annotations

import functools
import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import mitest as mt
from tests.builders import build, word_tokenizer


def saved(directory: Path, family: str = "gpt2") -> Path:
    build(family).save_pretrained(directory)
    return directory


def edit_weights(directory: Path, edit) -> None:
    path = directory / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def rewrite_header(path: Path, edit) -> None:
    """Edit a safetensors file's JSON header in place, keeping its tensor bytes."""
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    edit(header)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + raw[8 + length :])


def refused(directory: Path, *patterns: str) -> str:
    """Model.load raises ModelLoadError whose message matches every pattern; returns the message."""
    with pytest.raises(mt.ModelLoadError) as caught:
        mt.Model.load(directory)
    message = str(caught.value)
    for pattern in patterns:
        assert re.search(pattern, message, re.S), f"{pattern!r} not in {message!r}"
    return message


# -- tensors the model and the checkpoint disagree on ----------------------------------------------


def test_a_missing_tensor_is_refused_instead_of_randomly_initialised(tmp_path):
    directory = saved(tmp_path)
    edit_weights(directory, lambda t: t.pop("transformer.h.0.mlp.c_fc.weight"))
    refused(directory, "model.safetensors", r"transformer\.h\.0\.mlp\.c_fc\.weight", "missing")


def test_a_head_the_config_declares_but_the_weights_lack_is_refused(tmp_path):
    directory = saved(tmp_path, "bert")
    edit_weights(directory, lambda t: [t.pop(k) for k in list(t) if k.startswith("cls.")])
    refused(directory, r"cls\.predictions\.transform\.dense\.weight", "missing")


def test_a_config_with_more_layers_than_the_weights_is_refused(tmp_path):
    directory = saved(tmp_path)
    edit_json(directory / "config.json", lambda c: c.update(n_layer=3))
    refused(directory, r"transformer\.h\.2\.", "missing")


def test_an_unexpected_tensor_is_refused(tmp_path):
    directory = saved(tmp_path)
    edit_weights(directory, lambda t: t.__setitem__("transformer.h.0.extra", torch.zeros(3)))
    refused(directory, "model.safetensors", r"transformer\.h\.0\.extra", "unexpected")


def test_a_tensor_whose_shape_differs_from_the_config_is_refused(tmp_path):
    directory = saved(tmp_path)
    edit_weights(directory, lambda t: t.__setitem__("transformer.h.0.mlp.c_fc.weight", torch.zeros(32, 64)))
    refused(directory, r"transformer\.h\.0\.mlp\.c_fc\.weight", r"\(32, 64\)", r"\(32, 128\)")


def test_a_config_vocab_size_that_differs_from_the_embedding_is_refused(tmp_path):
    directory = saved(tmp_path)
    edit_json(directory / "config.json", lambda c: c.update(vocab_size=128))
    refused(directory, r"transformer\.wte\.weight", "shape")


def test_a_sharded_checkpoint_missing_a_shard_names_the_shard(tmp_path):
    build("gpt2").save_pretrained(tmp_path, max_shard_size="20KB")
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 1
    shards[-1].unlink()
    refused(tmp_path, re.escape(shards[-1].name), "missing")


def test_a_sharded_checkpoint_still_loads(tmp_path):
    source = build("gpt2")
    source.save_pretrained(tmp_path, max_shard_size="20KB")
    loaded = mt.Model.load(tmp_path)
    tokens = torch.arange(1, 9)[None]
    with torch.no_grad():
        torch.testing.assert_close(loaded.hf_model(tokens).logits, source(tokens).logits, atol=0, rtol=0)


# -- corrupt safetensors files ---------------------------------------------------------------------


def test_a_header_that_lies_about_a_shape_names_the_tensor(tmp_path):
    directory = saved(tmp_path)
    rewrite_header(directory / "model.safetensors", lambda h: h["transformer.wte.weight"].update(shape=[128, 32]))
    refused(directory, "model.safetensors", r"transformer\.wte\.weight", r"\[128, 32\]")


def test_a_header_whose_offsets_overlap_names_the_tensor(tmp_path):
    directory = saved(tmp_path)

    def overlap(header):
        entry = header["transformer.h.0.ln_1.bias"]
        begin, end = entry["data_offsets"]
        entry["data_offsets"] = [begin - 4, end - 4]

    rewrite_header(directory / "model.safetensors", overlap)
    refused(directory, "model.safetensors", r"transformer\.h\.0\.ln_1\.bias")


@pytest.mark.parametrize(
    "content",
    [b"garbage" * 10, b"", b"\x04\x00\x00\x00\x00\x00\x00\x00{no", (10**9).to_bytes(8, "little") + b"{}"],
    ids=["garbage", "empty", "bad-json", "header-too-long"],
)
def test_garbage_safetensors_is_refused(tmp_path, content):
    directory = saved(tmp_path)
    (directory / "model.safetensors").write_bytes(content)
    refused(directory, "model.safetensors", "safetensors")


def test_an_unknown_dtype_in_the_header_is_refused(tmp_path):
    directory = saved(tmp_path)
    rewrite_header(directory / "model.safetensors", lambda h: h["transformer.wte.weight"].update(dtype="F12"))
    refused(directory, r"transformer\.wte\.weight", "F12")


# -- remote code and invalid configs ---------------------------------------------------------------

_CUSTOM = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}


def test_an_unknown_model_type_with_auto_map_is_refused(tmp_path):
    directory = saved(tmp_path)
    edit_json(directory / "config.json", lambda c: c.update(model_type="evil", auto_map=_CUSTOM))
    refused(directory, "config.json", "auto_map", "remote code")


def test_a_known_model_type_with_auto_map_is_refused(tmp_path):
    directory = saved(tmp_path)
    edit_json(directory / "config.json", lambda c: c.update(auto_map=_CUSTOM))
    refused(directory, "config.json", "auto_map", "remote code")


def test_an_unknown_model_type_is_refused(tmp_path):
    directory = saved(tmp_path)
    edit_json(directory / "config.json", lambda c: c.update(model_type="evil"))
    refused(directory, "config.json", "'evil'")


@pytest.mark.parametrize("tokenizer_class", [None, "EvilTokenizer"])
def test_a_tokenizer_config_with_auto_map_is_refused(tmp_path, tokenizer_class):
    directory = saved(tmp_path)
    word_tokenizer(["a", "b"]).save_pretrained(directory)

    def custom(config):
        config["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
        if tokenizer_class:
            config["tokenizer_class"] = tokenizer_class

    edit_json(directory / "tokenizer_config.json", custom)
    refused(directory, "tokenizer_config.json", "auto_map", "remote code")


@pytest.mark.parametrize(
    "architecture", ["AutoTokenizer", "PreTrainedTokenizerFast", "GPT2Config", "os", "EvilForCausalLM"]
)
def test_architectures_that_name_no_model_class_are_refused(tmp_path, architecture):
    directory = saved(tmp_path)
    edit_json(directory / "config.json", lambda c: c.update(architectures=[architecture]))
    refused(directory, "config.json", "architectures", re.escape(architecture))


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '"text"', ""], ids=["broken", "list", "string", "empty"])
def test_an_invalid_config_json_is_refused(tmp_path, content):
    directory = saved(tmp_path)
    (directory / "config.json").write_text(content)
    refused(directory, "config.json")


def test_a_config_without_model_type_is_refused(tmp_path):
    directory = saved(tmp_path)
    edit_json(directory / "config.json", lambda c: c.pop("model_type"))
    refused(directory, "config.json", "model_type")


def test_an_invalid_tokenizer_config_is_refused(tmp_path):
    directory = saved(tmp_path)
    word_tokenizer(["a", "b"]).save_pretrained(directory)
    (directory / "tokenizer_config.json").write_text("{broken")
    refused(directory, "tokenizer_config.json")


def test_a_broken_tokenizer_json_is_refused(tmp_path):
    directory = saved(tmp_path)
    word_tokenizer(["a", "b"]).save_pretrained(directory)
    (directory / "tokenizer.json").write_text('{"version": "1.0", "model": 3}')
    refused(directory, "tokenizer")


# -- from_hf ---------------------------------------------------------------------------------------


def test_from_hf_refuses_a_model_transformers_loaded_with_new_weights(tmp_path):
    directory = saved(tmp_path)
    edit_weights(directory, lambda t: t.pop("transformer.h.0.mlp.c_fc.weight"))
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(directory)
    with pytest.raises(
        mt.ModelLoadError,
        match=r"not loaded from its checkpoint: transformer\.h\.0\.mlp\.c_fc\.weight.*newly initialised",
    ):
        mt.Model.from_hf(hf_model)


def test_from_hf_refuses_weights_reinitialised_for_a_mismatched_size(tmp_path):
    directory = saved(tmp_path)
    edit_weights(directory, lambda t: t.__setitem__("transformer.h.0.mlp.c_fc.weight", torch.zeros(32, 64)))
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(directory, ignore_mismatched_sizes=True)
    with pytest.raises(mt.ModelLoadError, match=r"transformer\.h\.0\.mlp\.c_fc\.weight"):
        mt.Model.from_hf(hf_model)


def test_from_hf_accepts_models_built_from_a_config_and_fully_loaded_ones(family, tmp_path):
    """A model built from a config is random on purpose; a fully loaded one has every tensor from the file."""
    built = build(family)
    assert mt.Model.from_hf(built).hf_model is built
    built.save_pretrained(tmp_path)
    model_class = type(built)
    loaded = model_class.from_pretrained(tmp_path)
    assert mt.Model.from_hf(loaded).hf_model is loaded


def test_from_hf_accepts_new_weights_when_told_to(tmp_path):
    directory = saved(tmp_path)
    edit_weights(directory, lambda t: t.pop("transformer.h.0.mlp.c_fc.weight"))
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(directory)
    assert mt.Model.from_hf(hf_model, allow_new_weights=True).hf_model is hf_model


def test_from_hf_refuses_a_head_replaced_after_loading_unless_told(tmp_path):
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(saved(tmp_path))
    hf_model.lm_head = torch.nn.Linear(32, 64, bias=False)
    with pytest.raises(mt.ModelLoadError, match=r"lm_head\.weight.*added after loading.*allow_new_weights=True"):
        mt.Model.from_hf(hf_model)
    assert mt.Model.from_hf(hf_model, allow_new_weights=True).hf_model is hf_model


def test_from_hf_accepts_weights_copied_into_a_loaded_model_and_resized_embeddings(tmp_path):
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(saved(tmp_path))
    hf_model.load_state_dict(build("gpt2", seed=3).state_dict())
    hf_model.resize_token_embeddings(80, mean_resizing=False)
    assert mt.Model.from_hf(hf_model).hf_model is hf_model


def test_measure_on_a_raw_model_with_new_weights_is_refused(tmp_path):
    directory = saved(tmp_path)
    edit_weights(directory, lambda t: t.pop("transformer.h.0.mlp.c_fc.weight"))
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(directory)
    prompts = mt.Prompts(torch.arange(1, 9)[None].repeat(2, 1), answers=[1, 2], wrong=[3, 4])
    with pytest.raises(mt.ModelLoadError, match="newly initiali"):
        mt.measure(hf_model, prompts, mt.ablate(mt.heads("0.0")), mt.metrics.logit_diff)


def test_a_tensor_transformers_would_not_even_report_is_still_refused(tmp_path, monkeypatch):
    """A key the class hides from the report (``_keys_to_ignore_on_load_missing``) is still random: refused."""
    directory = saved(tmp_path)
    edit_weights(directory, lambda t: t.pop("transformer.h.0.mlp.c_fc.weight"))
    monkeypatch.setattr(transformers.GPT2LMHeadModel, "_keys_to_ignore_on_load_missing", [r"c_fc\.weight"])
    refused(directory, r"not loaded from its checkpoint: transformer\.h\.0\.mlp\.c_fc\.weight", "newly initialised")


def test_a_tokenizer_class_transformers_lacks_is_refused(tmp_path):
    directory = saved(tmp_path)
    word_tokenizer(["a", "b"]).save_pretrained(directory)
    (directory / "tokenizer.json").unlink()
    edit_json(directory / "tokenizer_config.json", lambda c: c.update(tokenizer_class="EvilTokenizer"))
    refused(directory, "tokenizer", "EvilTokenizer")


# -- property: every damaged directory is refused or loads exactly the saved tensors ---------------

_FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_CONFIG_SIZES = ("n_embd", "n_head", "n_layer", "vocab_size", "n_positions", "n_inner")


@functools.cache
def _source() -> tuple[Path, dict[str, torch.Tensor]]:
    directory = Path(tempfile.mkdtemp(prefix="mitest-load-fuzz-"))
    model = build("gpt2")
    model.save_pretrained(directory)
    return directory, {key: value.clone() for key, value in model.state_dict().items()}


def faithful_or_refused(damage) -> None:
    """Damage a copy of a saved model; Model.load either refuses it or returns exactly the saved tensors."""
    source, expected = _source()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(shutil.copytree(source, Path(scratch) / "model"))
        damage(directory)
        try:
            loaded = mt.Model.load(directory)
        except mt.ModelLoadError as error:
            assert str(error).strip()
            return
    state = loaded.hf_model.state_dict()
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(state[key], value, atol=0, rtol=0, msg=key)


@_FUZZ
@given(position=st.integers(8, 10_000), byte=st.integers(0, 255))
def test_any_byte_of_the_header_changed_is_refused_or_harmless(position, byte):
    def flip(directory: Path) -> None:
        path = directory / "model.safetensors"
        raw = bytearray(path.read_bytes())
        end = 8 + int.from_bytes(raw[:8], "little")
        raw[8 + position % (end - 8)] = byte
        path.write_bytes(bytes(raw))

    faithful_or_refused(flip)


@_FUZZ
@given(dropped=st.sets(st.sampled_from(sorted(build("gpt2").state_dict())), min_size=1, max_size=4))
def test_any_tensors_dropped_are_refused(dropped):
    faithful_or_refused(lambda d: edit_weights(d, lambda t: [t.pop(k, None) for k in dropped]))


@_FUZZ
@given(key=st.sampled_from(_CONFIG_SIZES), value=st.integers(0, 160))
def test_any_size_in_the_config_changed_is_refused_or_loads_the_same_tensors(key, value):
    faithful_or_refused(lambda d: edit_json(d / "config.json", lambda c: c.update({key: value})))


def test_a_faithful_directory_loads_in_another_dtype(tmp_path):
    loaded = mt.Model.load(saved(tmp_path), dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.hf_model.parameters()} == {torch.bfloat16}
