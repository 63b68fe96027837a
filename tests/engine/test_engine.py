"""mt.measure: batching, ordering, padding, caching and what is kept in memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mitest as mt
from tests.builders import VOCAB, build, random_prompts

INTERVENTIONS = {
    "zero-heads": mt.ablate(mt.heads("0.1", "1.3")),
    "mean-mlp": mt.ablate(mt.mlp(0), "mean"),
    "patch-pattern": mt.patch(mt.head(1, 0, "pattern"), source="corrupted"),
    "patch-resid-last": mt.patch(mt.resid(0, "post").at("last"), source="corrupted"),
}


def _variable_prompts(n: int = 7, seed: int = 5) -> mt.Prompts:
    g = torch.Generator().manual_seed(seed)
    lengths = [6, 9, 4, 9, 7, 4, 6][:n]
    tokens = [torch.randint(1, VOCAB, (length,), generator=g) for length in lengths]
    corrupted = [torch.randint(1, VOCAB, (length,), generator=g) for length in lengths]
    answers = torch.randint(1, VOCAB, (n,), generator=g)
    return mt.Prompts(tokens, answers=answers, wrong=(answers + 3) % VOCAB, corrupted=corrupted)


@pytest.mark.parametrize("name", INTERVENTIONS)
def test_results_do_not_depend_on_batch_size(model, name):
    prompts = _variable_prompts()
    # A fresh wrapper per batch size, so no cached clean run, mean or capture is shared.
    runs = [
        mt.measure(mt.Model.from_hf(model.hf_model), prompts, INTERVENTIONS[name], mt.metrics.logit_diff, batch_size=b)
        for b in (1, 3, 32)
    ]
    for run in runs[1:]:
        np.testing.assert_allclose(run.intervened, runs[0].intervened, atol=1e-5)
        np.testing.assert_allclose(run.clean, runs[0].clean, atol=1e-5)


@pytest.mark.parametrize("name", ["zero-heads", "patch-pattern"])
def test_results_do_not_depend_on_prompt_order(model, prompts, name):
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    shuffled = prompts[order]
    a = mt.measure(model, prompts, INTERVENTIONS[name], mt.metrics.logit_diff, batch_size=4)
    b = mt.measure(model, shuffled, INTERVENTIONS[name], mt.metrics.logit_diff, batch_size=4)
    np.testing.assert_allclose(b.intervened, a.intervened[order.numpy()], atol=1e-5)


@pytest.mark.parametrize("name", ["zero-heads", "patch-pattern", "patch-resid-last"])
def test_padded_batches_match_each_prompt_run_alone(model, name):
    prompts = _variable_prompts()
    padded = mt.measure(model, prompts, INTERVENTIONS[name], mt.metrics.logit_diff, batch_size=7)
    alone = mt.measure(
        mt.Model.from_hf(model.hf_model), prompts, INTERVENTIONS[name], mt.metrics.logit_diff, batch_size=1
    )
    np.testing.assert_allclose(padded.clean, alone.clean, atol=1e-5)
    np.testing.assert_allclose(padded.intervened, alone.intervened, atol=1e-5)


def test_mean_ablation_ignores_padding(model):
    prompts = _variable_prompts()
    for per_position in (True, False):
        iv = mt.ablate(mt.heads("0.2"), "mean", per_position=per_position)
        padded = mt.measure(mt.Model.from_hf(model.hf_model), prompts, iv, mt.metrics.logit_diff, batch_size=7)
        unpadded = mt.measure(mt.Model.from_hf(model.hf_model), prompts, iv, mt.metrics.logit_diff, batch_size=1)
        np.testing.assert_allclose(padded.intervened, unpadded.intervened, atol=1e-5)


def test_metrics_read_each_prompts_own_answer_position(model):
    prompts = _variable_prompts()
    effect = mt.measure(model, prompts, mt.ablate(mt.heads("0.0")), mt.metrics.logprob, batch_size=7)
    for i in range(len(prompts)):
        with torch.no_grad():
            logits = model.hf_model(input_ids=prompts[i].tokens).logits[0, -1]
        expected = logits.log_softmax(-1)[prompts.answers[i]].item()
        assert effect.clean[i] == pytest.approx(expected, abs=1e-5)


def test_clean_run_and_means_are_computed_once_per_model_and_prompts(prompts):
    model = mt.Model.from_hf(build("gpt2"))
    passes = []
    handle = model.hf_model.register_forward_pre_hook(lambda *args: passes.append(1))
    try:
        for head in range(4):
            mt.measure(model, prompts, mt.ablate(mt.head(1, head), "mean"), mt.metrics.logit_diff)
    finally:
        handle.remove()
    # clean + corrupted metric passes and one pass for the blocks.1.attn.hook_z mean, then one per head
    assert len(passes) == 3 + 4
    assert model.cache.misses == 3 and model.cache.hits == 9


def test_a_pass_that_only_reads_stops_after_its_last_read(prompts):
    """Capturing layer 0's heads runs neither layer 1 nor the unembedding; the capture is the full one."""
    model = mt.Model.from_hf(build("gpt2"))
    calls: list[str] = []
    watched = {"layer 1": model.hf_model.transformer.h[1], "unembedding": model.hf_model.lm_head}
    handles = [module.register_forward_hook(lambda *a, n=name: calls.append(n)) for name, module in watched.items()]
    try:
        z = mt.activations(model, prompts, "blocks.0.attn.hook_z", batch_size=2)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == []
    captured = []
    handle = model.hf_model.transformer.h[0].attn.c_proj.register_forward_pre_hook(lambda m, a: captured.append(a[0]))
    try:
        with torch.no_grad():
            model.hf_model(input_ids=prompts.tokens, attention_mask=prompts.attention_mask)
    finally:
        handle.remove()
    real = prompts.attention_mask.bool()
    torch.testing.assert_close(z.flatten(2)[real], captured[0][real], rtol=0, atol=1e-6)


class _SharedTwice(torch.nn.Module):
    """A raw-module model (no site table) that runs one module twice a pass (weights shared across depth)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.shared, self.out = torch.nn.Embedding(16, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 16)

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        return self.out(self.shared(torch.tanh(self.shared(self.embed(input_ids)))))


def test_a_raw_module_that_runs_twice_a_pass_is_read_at_its_last_run_as_before():
    """Read-only passes stop early only on models with a site table; here the capture is the last run."""
    torch.manual_seed(0)
    net = _SharedTwice().eval()
    prompts = mt.Prompts(torch.randint(0, 16, (3, 5)), answers=torch.tensor([1, 2, 3]))
    captured = mt.activations(mt.Model.from_hf(net), prompts, "shared")
    with torch.no_grad():
        last = net.shared(torch.tanh(net.shared(net.embed(prompts.tokens))))
    torch.testing.assert_close(captured, last)


def test_only_the_sites_an_intervention_names_are_captured(prompts):
    model = mt.Model.from_hf(build("gpt2"))
    mt.measure(model, prompts, mt.patch(mt.heads("1.2"), source="corrupted"), mt.metrics.logit_diff)
    captured = [key for key in model.cache._items if key[0] == "capture"]
    assert [key[-1] for key in captured] == ["blocks.1.attn.hook_z"]
    acts = model.cache._items[captured[0]][0]
    assert tuple(acts.shape) == (len(prompts), prompts.tokens.shape[1], 4, 8)


def test_cache_stays_within_its_byte_budget(prompts):
    model = mt.Model.from_hf(build("gpt2"))
    model.cache.max_bytes = 20_000
    for layer in range(2):
        for site in ("hook_resid_pre", "hook_resid_post", "hook_mlp_out"):
            mt.measure(model, prompts, mt.patch(f"blocks.{layer}.{site}"), mt.metrics.logit_diff)
    assert model.cache._bytes <= 20_000


def test_effect_per_prompt_frame(model):
    prompts = random_prompts()
    prompts = mt.Prompts(
        prompts.tokens,
        answers=prompts.answers,
        wrong=prompts.wrong,
        corrupted=prompts.corrupted.tokens,
        groups=["a", "b"] * 3,
    )
    effect = mt.measure(model, prompts, mt.ablate(mt.heads("1.1")), mt.metrics.logit_diff)
    frame = effect.per_prompt
    assert list(frame.columns) == ["clean", "intervened", "delta", "corrupted", "group"]
    np.testing.assert_allclose(frame["delta"], frame["intervened"] - frame["clean"])
    assert frame["group"].tolist() == ["a", "b"] * 3
    assert effect.intervention["type"] == "Ablate"


def test_patching_from_clean_runs_the_corrupted_prompts_with_clean_answers(model, prompts):
    effect = mt.measure(model, prompts, mt.patch(mt.heads("0.0"), source="clean"), mt.metrics.logit_diff)
    nothing = mt.measure(model, prompts, mt.patch([], source="clean"), mt.metrics.logit_diff)
    np.testing.assert_array_equal(nothing.intervened, effect.corrupted)
    assert not np.allclose(effect.intervened, effect.corrupted)


def test_a_patch_from_clean_cannot_be_combined_with_clean_input_interventions():
    with pytest.raises(mt.InterventionError, match="same input"):
        mt.patch(mt.heads("0.0"), source="clean") + mt.ablate(mt.heads("1.1"))


def test_patching_needs_a_corrupted_set(model):
    prompts = random_prompts(corrupted=False)
    with pytest.raises(mt.InterventionError, match="corrupted="):
        mt.measure(model, prompts, mt.patch(mt.heads("0.0")), mt.metrics.logit_diff)


def test_per_position_mean_needs_reference_prompts_as_long_as_the_measured_ones(model, prompts):
    short = mt.Prompts(prompts.tokens[:, :4])
    with pytest.raises(mt.InterventionError, match="at most 4 tokens"):
        mt.measure(model, prompts, mt.ablate(mt.heads("0.0"), "mean", reference=short), mt.metrics.logit_diff)
    pooled = mt.measure(
        model, prompts, mt.ablate(mt.heads("0.0"), "mean", reference=short, per_position=False), mt.metrics.logit_diff
    )
    assert pooled.n == len(prompts)


def test_out_of_vocabulary_tokens_are_rejected_before_running(model):
    prompts = mt.Prompts([[1, 2, VOCAB + 5]], answers=[1], wrong=[2])
    with pytest.raises(mt.PromptsError, match=f"token id {VOCAB + 5} is out of the model's vocabulary"):
        mt.measure(model, prompts, mt.ablate(mt.heads("0.0")), mt.metrics.logit_diff)
    prompts = mt.Prompts([[1, 2, 3]], answers=[VOCAB], wrong=[2])
    with pytest.raises(mt.PromptsError, match="answer id"):
        mt.measure(model, prompts, mt.ablate(mt.heads("0.0")), mt.metrics.logit_diff)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_run_and_metrics_come_back_in_float(dtype, prompts):
    hf_model = build("llama").to(dtype)
    model = mt.Model.from_hf(hf_model)
    full = mt.Model.from_hf(build("llama"))
    iv = mt.ablate(mt.heads("1.0"), "mean") + mt.patch(mt.head(0, 1, "pattern"))
    half = mt.measure(model, prompts, iv, mt.metrics.logit_diff)
    single = mt.measure(full, prompts, iv, mt.metrics.logit_diff)
    assert half.intervened.dtype == np.float64
    assert next(hf_model.parameters()).dtype == dtype  # the model is left in its own precision
    # Tolerance stated: half precision differs from float32 by rounding, not by meaning.
    np.testing.assert_allclose(half.intervened, single.intervened, atol=0.5)
    assert np.corrcoef(half.intervened, single.intervened)[0, 1] > 0.95


def test_batches_are_built_once_per_size_and_rebuilt_after_an_in_place_edit(prompts):
    first, again = list(prompts.batches(4)), list(prompts.batches(4))
    assert all(a is b for a, b in zip(first, again, strict=True))
    assert [len(b) for b in prompts.batches(5)] == [5, 1]
    prompts.ids[0, 0] += 1  # refused when the set is next identified; its batches must not go stale meanwhile
    assert int(next(prompts.batches(4)).tokens[0, 0]) == int(prompts.ids[0, 0])
