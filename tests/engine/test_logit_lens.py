"""mt.metrics.logit_lens: the final norm applied afresh to a layer's residual stream, then the unembedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mitest as mt
from tests.builders import build, random_prompts


def _final_norm(model: mt.Model) -> torch.nn.Module:
    hf = model.hf_model
    return hf.transformer.ln_f if hasattr(hf, "transformer") else hf.model.norm


def _values(model, prompts, layer, metric=mt.metrics.logit_diff):
    return mt.measure(model, prompts, mt.ablate(mt.heads("0.0"), method="zero"), mt.metrics.logit_lens(layer, metric))


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model(request):
    return mt.Model.from_hf(build(request.param))


@pytest.fixture(scope="module")
def prompts():
    ragged = random_prompts(8)
    return mt.Prompts(
        [ragged.tokens[i, : 12 - i % 3].tolist() for i in range(8)], answers=ragged.answers, wrong=ragged.wrong
    )


def _by_hand(model, prompts, layer):
    """logit_diff from ``ln_f`` (or Llama's ``norm``) and ``lm_head`` applied to the captured resid_post."""
    resid = mt.activations(model, prompts, f"blocks.{layer}.hook_resid_post")
    with torch.no_grad():
        logits = model.hf_model.get_output_embeddings()(_final_norm(model)(resid))
    rows = torch.arange(len(prompts))
    final = logits[rows, prompts.lengths - 1]
    return (final[rows, prompts.answers] - final[rows, prompts.wrong]).numpy()


def test_at_the_last_layer_the_lens_is_the_models_logits(model, prompts):
    lens = _values(model, prompts, 1)
    real = mt.measure(model, prompts, mt.ablate(mt.heads("0.0"), method="zero"), mt.metrics.logit_diff)
    assert np.allclose(lens.clean, real.clean, atol=1e-5) and np.allclose(lens.intervened, real.intervened, atol=1e-5)


def test_at_a_middle_layer_the_lens_is_the_final_norm_applied_to_that_residual_stream(model, prompts):
    lens = _values(model, prompts, 0)
    assert np.allclose(lens.clean, _by_hand(model, prompts, 0), atol=1e-5)
    assert not np.allclose(lens.clean, _values(model, prompts, 1).clean, atol=1e-2)


def test_the_lens_does_not_reuse_the_final_layers_normalisation_scale(model, prompts):
    """Regression (TransformerLens PR #1077): dividing layer 0's residual by the *final* residual's scale
    gives other numbers; the lens must normalise each residual by its own."""
    resid0 = mt.activations(model, prompts, "blocks.0.hook_resid_post")
    resid1 = mt.activations(model, prompts, "blocks.1.hook_resid_post")
    norm = _final_norm(model)
    with torch.no_grad():
        if isinstance(norm, torch.nn.LayerNorm):
            scale = (resid1.var(-1, unbiased=False, keepdim=True) + norm.eps).sqrt()
            reused = (resid0 - resid0.mean(-1, keepdim=True)) / scale * norm.weight + norm.bias
        else:
            scale = (resid1.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon).sqrt()
            reused = resid0 / scale * norm.weight
        logits = model.hf_model.get_output_embeddings()(reused)
    rows = torch.arange(len(prompts))
    final = logits[rows, prompts.lengths - 1]
    stale = (final[rows, prompts.answers] - final[rows, prompts.wrong]).numpy()
    lens = _values(model, prompts, 0).clean
    assert np.abs(lens - stale).max() > 1e-2
    assert np.allclose(lens, _by_hand(model, prompts, 0), atol=1e-5)


def test_interventions_before_the_layer_move_the_lens_and_later_ones_do_not(model, prompts):
    before = mt.measure(model, prompts, mt.ablate(mt.heads("0.1"), method="zero"), mt.metrics.logit_lens(0))
    later = mt.measure(model, prompts, mt.ablate(mt.heads("1.1"), method="zero"), mt.metrics.logit_lens(0))
    assert np.abs(before.delta).max() > 1e-3
    assert np.array_equal(later.intervened, later.clean)


def test_any_metric_and_claim_reads_the_lens(model, prompts):
    lens = mt.metrics.logit_lens(0, mt.metrics.kl_div)
    effect = mt.measure(model, prompts, mt.ablate(mt.heads("0.1"), method="zero"), lens)
    assert effect.metric == "logit_lens(0, kl_div)" and (effect.intervened >= -1e-6).all()


def test_code_that_passes_only_final_logits_is_refused(prompts):
    with pytest.raises(mt.MetricError, match="residual stream"):
        mt.metrics.logit_lens(0)(torch.zeros(8, 12, 64), prompts)
    with pytest.raises(mt.MetricError, match="layer"):
        mt.metrics.logit_lens(-1)


def test_models_without_a_final_norm_are_refused(prompts):
    bert = mt.Model.from_hf(build("bert"))
    with pytest.raises(mt.SiteError, match="final norm"):
        mt.measure(bert, prompts, mt.ablate(mt.heads("0.1")), mt.metrics.logit_lens(0))
