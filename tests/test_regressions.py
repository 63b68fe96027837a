"""Regression tests for bugs found in review: each failed before its fix."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import mitest as mt
from mitest.spec.metrics import Metric
from tests.builders import VOCAB, build, random_prompts


def _logit_diff(model, prompts):
    return mt.measure(model, prompts, mt.ablate(mt.heads("0.0")), mt.metrics.logit_diff)


@pytest.mark.parametrize("change", ["data-edit", "dtype", "buffer"])
def test_cached_clean_values_follow_weight_dtype_and_buffer_changes(change, prompts):
    family = "llama" if change == "buffer" else "gpt2"
    model = mt.Model.from_hf(build(family))
    before = _logit_diff(model, prompts).clean
    with torch.no_grad():
        if change == "data-edit":
            model.hf_model.lm_head.weight.data.mul_(2.0)  # invisible to torch's version counter
        elif change == "dtype":
            model.hf_model.to(torch.float64)
        else:
            rotary = model.hf_model.model.rotary_emb
            rotary.inv_freq.data = rotary.inv_freq.data * 3.0
    after = _logit_diff(model, prompts).clean
    fresh = _logit_diff(mt.Model.from_hf(model.hf_model), prompts).clean
    np.testing.assert_array_equal(after, fresh)
    assert not np.allclose(before, after)


def test_metric_classes_with_the_same_name_do_not_share_cached_values(prompts):
    def metric_class(module, token):
        def call(self, logits, batch, reference=None):
            return logits[:, -1, token].float()

        cls = dataclasses.dataclass(frozen=True)(type("Tok", (Metric,), {"__module__": module, "__call__": call}))
        return cls()

    model = mt.Model.from_hf(build("gpt2"))
    first = mt.measure(model, prompts, mt.ablate(mt.heads("1.0")), metric_class("suite_a", 3))
    second = mt.measure(model, prompts, mt.ablate(mt.heads("1.0")), metric_class("suite_b", 4))
    assert not np.allclose(first.clean, second.clean)


def test_effect_values_are_private_read_only_copies(prompts):
    model = mt.Model.from_hf(build("gpt2"))
    first = _logit_diff(model, prompts)
    with pytest.raises(ValueError, match="read-only"):
        first.clean[0] = 1e9
    np.testing.assert_array_equal(_logit_diff(model, prompts).clean, first.clean)


def test_corrupted_kl_is_measured_against_the_clean_distribution(model, prompts):
    effect = mt.measure(model, prompts, mt.ablate(mt.heads("0.0")), mt.metrics.kl_div())
    with torch.no_grad():
        clean = model.hf_model(prompts.tokens).logits[:, -1].log_softmax(-1)
        corrupted = model.hf_model(prompts.corrupted.tokens).logits[:, -1].log_softmax(-1)
    expected = (clean.exp() * (clean - corrupted)).sum(-1)
    np.testing.assert_allclose(effect.corrupted, expected.double().numpy(), rtol=1e-4)
    assert (effect.corrupted > 1e-3).all()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_half_precision_resid_mid_edits_touch_only_the_selected_positions(family, prompts):
    model = mt.Model.from_hf(build(family).to(torch.bfloat16))
    seen = []

    def keep(logits, batch):
        seen.append(logits.clone())
        return logits[:, -1, 0].float()

    mt.measure(model, prompts, mt.patch(mt.resid(1, "mid").at("last"), source="corrupted"), keep)
    clean, patched = seen[0], seen[-1]
    assert torch.equal(patched[:, :-1], clean[:, :-1])
    assert not torch.equal(patched[:, -1], clean[:, -1])


def _variable_prompts(seed: int = 5) -> mt.Prompts:
    g = torch.Generator().manual_seed(seed)
    lengths = [6, 9, 4, 9, 7, 4, 6]
    tokens = [torch.randint(1, VOCAB, (n,), generator=g) for n in lengths]
    answers = torch.randint(1, VOCAB, (len(lengths),), generator=g)
    return mt.Prompts(tokens, answers=answers, wrong=(answers + 3) % VOCAB)


@pytest.mark.parametrize("family", ["gpt2", "bert", "llama"])
@pytest.mark.parametrize("per_position", [True, False])
def test_pattern_mean_ablation_on_variable_lengths_does_not_depend_on_batch_size(family, per_position):
    hf_model, prompts = build(family), _variable_prompts()
    iv = mt.ablate(mt.head(1, 1, "pattern"), "mean", per_position=per_position)
    runs = [
        mt.measure(mt.Model.from_hf(hf_model), prompts, iv, mt.metrics.logit_diff, batch_size=b).intervened
        for b in (1, 2, 7)
    ]
    np.testing.assert_allclose(runs[1], runs[0], atol=1e-5)
    np.testing.assert_allclose(runs[2], runs[0], atol=1e-5)


def test_pooled_pattern_mean_from_longer_reference_prompts(model, prompts):
    short = mt.Prompts(prompts.tokens[:, :5], answers=prompts.answers, wrong=prompts.wrong)
    iv = mt.ablate(mt.head(1, 1, "pattern"), "mean", reference=prompts, per_position=False)
    assert mt.measure(model, short, iv, mt.metrics.logit_diff).n == len(prompts)


@pytest.mark.parametrize(
    ("intervention", "error", "message"),
    [
        (mt.steer(mt.direction("blocks.0.hook_resid_post", torch.ones(7)), 1.0), mt.InterventionError, "7 entries"),
        (mt.ablate(mt.mlp(0), "resample", reference=mt.Prompts([[VOCAB + 1] * 12] * 2)), mt.PromptsError, "vocab"),
        (mt.patch(mt.mlp(0), source=mt.Prompts(torch.full((6, 12), VOCAB + 2))), mt.PromptsError, "vocab"),
        (mt.ablate("transformer"), mt.SiteError, "not a tensor; hook one of its submodules"),
    ],
)
def test_user_mistakes_are_mitest_errors(intervention, error, message, prompts):
    model = mt.Model.from_hf(build("gpt2"))
    with pytest.raises(error, match=message):
        mt.measure(model, prompts, intervention, mt.metrics.logit_diff)


def test_unhashable_and_non_dataclass_metrics_work(prompts):
    @dataclasses.dataclass
    class Callable:  # mutable dataclass: unhashable
        token: int

        def __call__(self, logits, batch):
            return logits[:, -1, self.token]

    class Plain(Metric):
        def __init__(self, token):
            self.token = token

        def __call__(self, logits, batch, reference=None):
            return logits[:, -1, self.token].float()

    model = mt.Model.from_hf(build("gpt2"))
    a = mt.measure(model, prompts, mt.ablate(mt.heads("1.0")), Callable(3))
    b = mt.measure(model, prompts, mt.ablate(mt.heads("1.0")), Plain(3))
    np.testing.assert_allclose(a.intervened, b.intervened)
    assert Plain(3).key() != Plain(4).key()


def test_resampling_never_hands_a_prompt_its_own_activation(model):
    prompts = random_prompts(n=4, corrupted=False)
    copy = mt.Prompts(prompts.tokens.clone())
    for seed in range(5):
        effect = mt.measure(
            model, prompts, mt.ablate(mt.resid(1, "pre"), "resample", reference=copy, seed=seed), mt.metrics.logit_diff
        )
        assert not np.isclose(effect.intervened, effect.clean, atol=1e-6).any()


def test_resampling_from_identical_reference_prompts_equals_mean_of_one(model, prompts):
    one = mt.Prompts(prompts.corrupted.tokens[:1])
    tiled = mt.Prompts(prompts.corrupted.tokens[:1].repeat(4, 1))
    sites = mt.heads("1.0", "1.2")
    resampled = mt.measure(model, prompts, mt.ablate(sites, "resample", reference=tiled), mt.metrics.logit_diff)
    mean = mt.measure(model, prompts, mt.ablate(sites, "mean", reference=one), mt.metrics.logit_diff)
    np.testing.assert_allclose(resampled.intervened, mean.intervened, atol=1e-5)


def test_prompts_edited_in_place_are_refused_rather_than_measured_from_a_stale_cache():
    model, prompts = mt.Model.from_hf(build("gpt2")), random_prompts()
    _logit_diff(model, prompts)
    prompts.tokens[:, -1] = (prompts.tokens[:, -1] + 1) % VOCAB
    with pytest.raises(mt.PromptsError, match="edited in place"):
        _logit_diff(model, prompts)


def test_fingerprints_hash_shapes_not_only_bytes():
    a = mt.Prompts([[1, 2], [3, 4]], answers=[9, 10], wrong=[8, 11], answer_positions=[0, 1])
    b = mt.Prompts([[1, 2, 3, 4, 2, 2, 9, 10]], answers=[11], wrong=[0], answer_positions=[1])
    assert a.fingerprint != b.fingerprint


def test_non_finite_metric_values_are_an_error(model, prompts):
    def sometimes_nan(logits, batch):
        values = logits[:, -1, 0].clone()
        values[1] = float("nan")
        return values

    with pytest.raises(mt.MetricError, match="nan on prompt 1"):
        mt.measure(model, prompts, mt.ablate(mt.heads("0.0")), sometimes_nan)


def test_a_directly_built_combination_checks_its_inputs():
    with pytest.raises(mt.InterventionError, match="same input"):
        mt.Combined((mt.patch(mt.heads("0.0"), source="clean"), mt.ablate(mt.heads("1.1"))))


def test_tokenizer_style_padded_batches_with_an_attention_mask(model):
    rows = [[5, 6, 7], [8, 9, 10, 11, 12]]
    right = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    left = torch.tensor([[0, 0, 5, 6, 7], [8, 9, 10, 11, 12]])
    mask_right = (right != 0).long()
    mask_left = (left != 0).long()
    expected = mt.Prompts(rows, answers=[1, 2], wrong=[3, 4])
    for tokens, mask in ((right, mask_right), (left, mask_left)):
        prompts = mt.Prompts(tokens, answers=[1, 2], wrong=[3, 4], attention_mask=mask)
        assert prompts.fingerprint == expected.fingerprint
    with pytest.raises(mt.PromptsError, match="between real tokens"):
        mt.Prompts(right, attention_mask=torch.tensor([[1, 0, 1, 0, 0], [1, 1, 1, 1, 1]]))


def test_denoising_loss_is_scored_on_the_clean_continuation(model, prompts):
    effect = mt.measure(model, prompts, mt.patch(mt.resid(1, "post"), source="clean"), mt.metrics.loss())
    # Patching the whole last residual stream from clean restores the clean loss exactly.
    np.testing.assert_allclose(effect.intervened, effect.clean, atol=1e-5)
