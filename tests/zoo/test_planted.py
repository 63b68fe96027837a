"""mitest on models with exactly planted circuits (mitest.zoo.planted): ground truth, false positives, power.

Every number here comes from real forward passes. Seeded draws of prompts are disjoint slices of one
large seeded prompt set (prompts are drawn independently, so each slice is an independent draw),
measured in one batch because tiny models are dominated by per-pass overhead.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mitest as mt
from mitest.zoo import planted

ALPHA = 0.05
LENGTH = 7  # repeated segment: prompts are [BOS] + r + r, 15 tokens
VOCAB = 16
OTHER_HEADS = (planted.DISTRACTOR_HEAD, *planted.INDUCTION_NULL_HEADS)


def _tolerance(rate: float, draws: int) -> float:
    """Three Monte-Carlo standard errors of a rate estimated from ``draws`` claims."""
    return 3 * math.sqrt(rate * (1 - rate) / draws)


def _draws(effect: mt.Effect, size: int) -> list[mt.Effect]:
    """Split an effect into disjoint draws of ``size`` prompts."""
    return [
        mt.Effect.from_values(effect.clean[start : start + size], effect.intervened[start : start + size])
        for start in range(0, effect.n, size)
    ]


def _verdict(claim) -> mt.Verdict:
    """The verdict of a claim whatever its outcome."""
    try:
        return claim()
    except (mt.ClaimRefuted, mt.ClaimInconclusive) as failed:
        return failed.verdict


def _outcomes(effects: list[mt.Effect], claim) -> dict[str, float]:
    """Share of each outcome of ``claim(effect)`` over the draws."""
    outcomes = [_verdict(lambda e=e: claim(e)).outcome for e in effects]
    return {outcome: outcomes.count(outcome) / len(outcomes) for outcome in (mt.HOLDS, mt.REFUTED, mt.INCONCLUSIVE)}


def _max_logit_change(model: mt.Model, prompts: mt.Prompts):
    """A metric: each prompt's largest absolute logit change (any position, any token) from a plain forward."""
    with torch.no_grad():
        reference = model.hf_model(prompts.ids).logits

    def max_logit_change(logits: torch.Tensor, batch: mt.Prompts) -> torch.Tensor:
        return (logits - reference[batch.index]).abs().amax((1, 2))

    return max_logit_change


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def induction() -> planted.Planted:
    return planted.induction(VOCAB, length=LENGTH, n=64, seed=0)


@pytest.fixture(scope="module")
def induction_change(induction):
    return _max_logit_change(*induction)


@pytest.fixture(scope="module")
def effect_model() -> planted.Planted:
    return planted.planted_effect(1.0, n=64, seed=0)


# -- ground truth: the planted circuits are what the docstrings say ---------------------------------


def test_induction_patterns_are_exactly_the_planted_ones(induction):
    model, prompts = induction
    with torch.no_grad():
        output = model.hf_model(prompts.ids, output_attentions=True)
    length = prompts.ids.shape[1]
    position = torch.arange(length)
    previous = torch.eye(length)[(position - 1).clamp(min=0)]
    # second copy: the token after the first occurrence, LENGTH - 1 back; elsewhere BOS
    source = torch.where(position > LENGTH, position - LENGTH + 1, 0)
    assert torch.equal(output.attentions[0][:, 0], previous.expand(len(prompts), -1, -1))
    assert torch.equal(output.attentions[1][:, 0], torch.eye(length)[source].expand(len(prompts), -1, -1))

    logits = output.logits
    assert torch.equal(logits[:, LENGTH + 1 : -1].argmax(-1), prompts.ids[:, LENGTH + 2 :])
    assert torch.equal(logits[:, -1].argmax(-1), prompts.answers)
    token_loss = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), prompts.ids[:, 1:], reduction="none")
    torch.testing.assert_close(token_loss[:, :LENGTH], torch.full((len(prompts), LENGTH), math.log(VOCAB)))
    expected = math.log(1 + (VOCAB - 1) * math.exp(-planted.LOGIT))
    torch.testing.assert_close(token_loss[:, LENGTH + 1 :], torch.full((len(prompts), LENGTH - 1), expected))


@pytest.mark.parametrize("head", [planted.PREVIOUS_TOKEN_HEAD, planted.INDUCTION_HEAD])
def test_ablating_either_circuit_head_destroys_induction(induction, head):
    model, prompts = induction
    effect = mt.measure(model, prompts, mt.ablate(mt.heads(head)), mt.metrics.loss("second_half"), batch_size=64)
    assert effect.delta.min() > 1.5  # every prompt: from ~0.4 to near log(16) = 2.77
    assert effect.expect_increase(at_least=1.0, alpha=ALPHA).holds
    with pytest.raises(mt.ClaimRefuted):
        effect.expect_increase(at_least=math.log(VOCAB), alpha=ALPHA)  # above the largest possible rise


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
@pytest.mark.parametrize("head", OTHER_HEADS)
def test_null_heads_change_no_logit_and_the_distractor_only_by_rounding(induction, induction_change, head, method):
    model, prompts = induction
    effect = mt.measure(model, prompts, mt.ablate(mt.heads(head), method), induction_change, batch_size=64)
    np.testing.assert_array_equal(effect.clean, 0.0)  # mitest's clean run is the plain forward, bit for bit
    assert effect.hooks[0]["changed"]  # the head's hook_z did change
    if head == planted.DISTRACTOR_HEAD:
        assert effect.intervened.max() < 1e-5  # float32 rounding of the all-ones direction
    else:
        np.testing.assert_array_equal(effect.intervened, 0.0)
    assert effect.expect_no_change(within=1e-4, alpha=ALPHA).holds


def test_the_distractor_writes_a_large_prompt_dependent_output_along_all_ones(induction):
    model, prompts = induction
    hf = model.hf_model
    d_head = hf.config.n_embd // hf.config.n_head
    rows = slice(d_head, 2 * d_head)  # head 1 of layer 0
    captured = []
    handle = hf.transformer.h[0].attn.c_proj.register_forward_hook(lambda _, args, out: captured.append(args[0]))
    try:
        with torch.no_grad():
            hf(prompts.ids)
    finally:
        handle.remove()
    output = captured[0][..., rows] @ hf.transformer.h[0].attn.c_proj.weight[rows]
    assert output.abs().min() >= 1.0  # nonzero everywhere, and prompt-dependent
    torch.testing.assert_close(output, output[..., :1].expand_as(output), rtol=0, atol=0)  # along all-ones
    assert output[:, -1, 0].std() > 0.01


def test_mlps_output_exactly_zero(induction):
    model, prompts = induction
    with pytest.warns(mt.NoOpInterventionWarning):
        mt.measure(model, prompts, mt.ablate([mt.mlp(0), mt.mlp(1)]), mt.metrics.logit_diff, batch_size=64)


def test_patching_the_induction_head_restores_the_clean_prediction(induction):
    model, prompts = induction
    patched = mt.measure(
        model, prompts, mt.patch(mt.heads(planted.INDUCTION_HEAD), source="clean"), mt.metrics.logit_diff
    )
    np.testing.assert_allclose(patched.clean, planted.LOGIT, atol=1e-5)
    np.testing.assert_allclose(patched.corrupted, 0.0, atol=1e-5)
    assert patched.expect_recovery(at_least=0.99, alpha=ALPHA).estimate == pytest.approx(1.0, abs=1e-5)
    null = mt.measure(
        model, prompts, mt.patch(mt.heads(*planted.INDUCTION_NULL_HEADS[2:]), source="clean"), mt.metrics.logit_diff
    )
    np.testing.assert_array_equal(null.intervened, null.corrupted)


def test_planted_effect_is_exactly_the_documented_size(effect_model):
    model, prompts = effect_model
    sizes = planted.effect_sizes(1.0)[prompts.ids[:, 1].numpy()]
    baselines = planted.BASELINES[prompts.ids[:, -1].numpy() - 16]  # fillers follow the 16 level tokens
    effect = mt.measure(model, prompts, mt.ablate(mt.heads(planted.EFFECT_HEAD)), mt.metrics.logit_diff)
    np.testing.assert_allclose(effect.clean, baselines + sizes, atol=1e-5)
    np.testing.assert_allclose(effect.delta, -sizes, atol=1e-5)
    resampled = mt.measure(model, prompts, mt.ablate(mt.heads(planted.EFFECT_HEAD), "resample"), mt.metrics.logit_diff)
    donor = resampled.intervened - baselines  # the size of the prompt it was resampled from
    assert np.abs(donor[:, None] - planted.effect_sizes(1.0)[None]).min(1).max() < 1e-5
    assert np.abs(resampled.delta).max() > 1.0
    change = _max_logit_change(model, prompts)
    for head in planted.EFFECT_NULL_HEADS:
        for method in ("zero", "mean", "resample"):
            null = mt.measure(model, prompts, mt.ablate(mt.heads(head), method), change, batch_size=64)
            np.testing.assert_array_equal(null.intervened, 0.0)


# -- false positives over seeded prompt draws -------------------------------------------------------


def test_claims_that_null_heads_matter_never_hold():
    """20 draws of 30 prompts: 'ablating it raises (or lowers) the loss' never HOLDS; 'no change' always does."""
    model, prompts = planted.induction(VOCAB, length=LENGTH, n=600, seed=1)
    for head in OTHER_HEADS:
        effect = mt.measure(model, prompts, mt.ablate(mt.heads(head)), mt.metrics.loss("second_half"), batch_size=600)
        draws = _draws(effect, 30)
        assert _outcomes(draws, lambda e: e.expect_increase(at_least=1e-3, alpha=ALPHA))[mt.HOLDS] == 0
        assert _outcomes(draws, lambda e: e.expect_decrease(at_least=1e-3, alpha=ALPHA))[mt.HOLDS] == 0
        assert _outcomes(draws, lambda e: e.expect_no_change(within=1e-3, alpha=ALPHA))[mt.HOLDS] == 1


def test_false_holds_at_the_boundary_stay_within_alpha():
    """A head whose true mean effect is exactly 0 (per-prompt sd 1): 'it matters' HOLDS at most alpha of the time."""
    draws = 300
    model, prompts = planted.planted_effect(0.0, n=draws * 30, seed=2)
    effect = mt.measure(
        model, prompts, mt.ablate(mt.heads(planted.EFFECT_HEAD)), mt.metrics.logit_diff, batch_size=9000
    )
    effects = _draws(effect, 30)  # the fewest prompts mitest decides a claim from at alpha 0.05 is 29
    bound = ALPHA + _tolerance(ALPHA, draws)
    assert _outcomes(effects, lambda e: e.expect_decrease(at_least=0.0, alpha=ALPHA))[mt.HOLDS] <= bound
    assert _outcomes(effects, lambda e: e.expect_increase(at_least=0.0, alpha=ALPHA))[mt.HOLDS] <= bound


# -- power --------------------------------------------------------------------------------------------


def test_power_on_a_planted_effect_matches_the_reported_power():
    """Strength 1, sd 1, n = 30: 'lowers it by at least d' HOLDS as often as the t-test's power says."""
    draws, n = 300, 30
    model, prompts = planted.planted_effect(1.0, n=draws * n, seed=3)
    effect = mt.measure(
        model, prompts, mt.ablate(mt.heads(planted.EFFECT_HEAD)), mt.metrics.logit_diff, batch_size=9000
    )
    effects = _draws(effect, n)

    verdicts = [_verdict(lambda e=e: e.expect_decrease(at_least=0.5, alpha=ALPHA)) for e in effects]
    held = np.mean([v.holds for v in verdicts])
    design = mt.stats.power(0.5, 1.0, n, ALPHA)  # true gap 0.5, true sd 1
    assert abs(held - design) <= _tolerance(design, draws) + 0.02
    assert abs(np.mean([v.power for v in verdicts]) - held) <= 0.1  # post-hoc power, on average

    assert _outcomes(effects[:100], lambda e: e.expect_decrease(at_least=0.0, alpha=ALPHA))[mt.HOLDS] >= 0.95
    beyond = _outcomes(effects[:100], lambda e: e.expect_decrease(at_least=2.0, alpha=ALPHA))
    assert beyond[mt.HOLDS] == 0 and beyond[mt.REFUTED] >= 0.95
