"""Expectations on Effect: verdicts, messages, errors, and the claims on real forward passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mitest as mt
from tests.builders import build, random_prompts

RNG = np.random.default_rng(0)
CLEAN = RNG.normal(3.0, 1.0, 60)


def _effect(shift: float, noise: float = 1.0, n: int = 60, **kwargs) -> mt.Effect:
    rng = np.random.default_rng(1)
    clean = CLEAN[:n]
    return mt.Effect.from_values(clean, clean + shift + noise * rng.normal(size=n), **kwargs)


def test_a_holding_claim_returns_a_verdict_with_named_fields():
    verdict = _effect(1.5).expect_increase(at_least=1.0)
    assert isinstance(verdict, mt.Verdict) and verdict.holds
    assert verdict.outcome == mt.HOLDS and verdict.pvalue < verdict.alpha
    ci = verdict.confidence_interval()
    assert ci.low < verdict.estimate < ci.high and ci.level == pytest.approx(0.9)
    assert verdict.to_dict()["outcome"] == "HOLDS"


def test_a_refuted_claim_raises_an_assertion_error_with_a_readable_summary():
    effect = _effect(0.2)
    with pytest.raises(mt.ClaimRefuted) as caught:
        effect.expect_increase(at_least=1.0)
    assert isinstance(caught.value, AssertionError)
    message = str(caught.value)
    verdict = caught.value.verdict
    for part in (
        "REFUTED",
        "mean increase of at least 1",
        "estimate",
        "90% CI",
        "p(holds)",
        "p(refuted)",
        "n = 60 prompts",
        "threshold 1",
        "prompts most against the claim: #",
    ):
        assert part in message
    worst = [index for index, _ in verdict.worst]
    assert worst == list(np.argsort(effect.delta)[:3])


def test_an_inconclusive_claim_says_what_n_would_decide_it():
    effect = _effect(1.1, noise=1.0, n=20)
    with pytest.raises(mt.ClaimInconclusive) as caught:
        effect.expect_increase(at_least=1.0)
    verdict = caught.value.verdict
    assert "smallest effect this test detects at 80% power is" in str(caught.value)
    assert f"use n>={verdict.n_needed}" in str(caught.value)
    assert verdict.mde > abs(verdict.estimate - verdict.threshold)
    assert verdict.n_needed > 20


def test_decrease_is_the_mirror_of_increase():
    assert _effect(-1.5).expect_decrease(at_least=1.0).holds
    with pytest.raises(mt.ClaimRefuted):
        _effect(1.5).expect_decrease(at_least=0.0)


def test_relative_thresholds_scale_by_the_clean_metric():
    clean = np.full(40, 4.0) + RNG.normal(0, 0.1, 40)
    effect = mt.Effect.from_values(clean, clean * 0.4 + RNG.normal(0, 0.05, 40))  # drops by 60%
    verdict = effect.expect_decrease(at_least=0.5, relative=True)
    assert verdict.estimate == pytest.approx(0.6, abs=0.02)
    with pytest.raises(mt.ClaimRefuted):
        effect.expect_decrease(at_least=0.7, relative=True)


def test_no_change_needs_a_margin_and_uses_both_sides():
    with pytest.raises(mt.MitestError, match="positive margin"):
        _effect(0.0).expect_no_change()
    assert _effect(0.0, noise=0.1).expect_no_change(within=0.2).holds
    with pytest.raises(mt.ClaimRefuted):
        _effect(-0.5, noise=0.1).expect_no_change(within=0.2)
    with pytest.raises(mt.ClaimInconclusive):
        _effect(0.0, noise=2.0, n=15).expect_no_change(within=0.2)


def test_recovery_is_a_ratio_of_means_against_the_base_run():
    clean = 4.0 + RNG.normal(0, 0.3, 50)
    base = RNG.normal(0, 0.3, 50)
    patched = base + 0.95 * (clean - base) + RNG.normal(0, 0.1, 50)
    effect = mt.Effect.from_values(clean, patched, corrupted=base)
    verdict = effect.expect_recovery(at_least=0.9)
    assert verdict.estimate == pytest.approx((patched - base).sum() / (clean - base).sum())
    with pytest.raises(mt.ClaimRefuted):
        effect.expect_recovery(at_least=0.99)


def test_recovery_refuses_a_gap_too_small_to_normalise_by():
    clean = RNG.normal(0, 1, 30)
    effect = mt.Effect.from_values(clean, clean, corrupted=clean + RNG.normal(0, 1, 30) * 0.01)
    with pytest.raises(mt.MitestError, match="gap is too small"):
        effect.expect_recovery(at_least=0.9)
    with pytest.raises(mt.MitestError, match="corrupted"):
        mt.Effect.from_values(clean, clean).expect_recovery(at_least=0.9)


def test_flip_rate_uses_the_exact_binomial_test():
    flipped = np.array([True] * 45 + [False] * 15)
    effect = mt.Effect.from_values(CLEAN, CLEAN, flipped=flipped)
    verdict = effect.expect_flip_rate(at_least=0.5)
    assert verdict.estimate == 0.75 and verdict.test == "exact binomial"
    assert verdict.pvalue == pytest.approx(__import__("scipy").stats.binomtest(45, 60, 0.5, "greater").pvalue)
    with pytest.raises(mt.ClaimRefuted):
        effect.expect_flip_rate(at_least=0.95)


def test_degenerate_data_get_clear_answers_not_nan():
    """Equal changes carry no spread (sign-test p-value); a change of exactly 0 everywhere is exact."""
    same = mt.Effect.from_values(np.zeros(40), np.full(40, 2.0))
    verdict = same.expect_increase(at_least=1.0)
    assert verdict.low == verdict.high == verdict.estimate == 2.0
    assert verdict.pvalue == 0.5**40 and not np.isnan(verdict.pvalue_refuted)
    with pytest.raises(mt.ClaimRefuted):
        same.expect_increase(at_least=3.0)
    nothing = mt.Effect.from_values(np.arange(3.0), np.arange(3.0))  # the intervention did nothing: exact
    assert nothing.expect_no_change(within=0.01).pvalue == 0.0
    with pytest.raises(mt.ClaimRefuted) as caught:
        nothing.expect_increase(at_least=0.5)
    assert caught.value.verdict.pvalue_refuted == 0.0
    with pytest.raises(mt.MitestError, match="at least 2 independent prompts"):
        mt.Effect.from_values([1.0], [2.0]).expect_increase(at_least=0.5)


def test_groups_make_clusters_the_unit():
    groups = np.repeat(np.arange(6), 10)
    verdict = _effect(1.5, groups=groups).expect_increase(at_least=0.5)
    assert verdict.clusters == 6 and "cluster" in verdict.test


def test_verdicts_are_deterministic():
    a, b = (_effect(1.2, n=40).expect_increase(at_least=0.5) for _ in range(2))
    assert a == b


def test_suite_alpha_is_shared_across_the_claim_family():
    effect = _effect(1.45, n=40)
    verdict = effect.expect_increase(at_least=1.0)
    assert verdict.alpha == 0.05 and 0.001 < verdict.pvalue < 0.05
    try:
        mt.settings.family_size = 50
        with pytest.raises(mt.ClaimInconclusive) as caught:
            effect.expect_increase(at_least=1.0)
        assert caught.value.verdict.alpha == pytest.approx(0.001)
    finally:
        mt.settings.family_size = 1


def test_monotonic_dose_response_on_real_steering():
    hf_model = build("gpt2")
    model = mt.Model.from_hf(hf_model)
    tokens = random_prompts(n=30, corrupted=False).tokens
    prompts = mt.Prompts(tokens, answers=[5] * 30, wrong=[9] * 30)
    unembed = hf_model.lm_head.weight.detach()
    towards_answer = mt.direction("blocks.1.hook_resid_post", unembed[5] - unembed[9])
    doses = [mt.measure(model, prompts, mt.steer(towards_answer, coef), mt.metrics.logit_diff) for coef in (1, 2, 4)]
    verdict = mt.expect_monotonic(doses, increasing=True)
    assert verdict.estimate == 1.0
    with pytest.raises(mt.ClaimRefuted):
        mt.expect_monotonic(doses, increasing=False)
    with pytest.raises(mt.MitestError, match="same prompts"):
        mt.expect_monotonic([doses[0], _effect(1.0, n=30)])


def test_ablating_heads_on_a_real_model_decides_claims(prompts):
    model = mt.Model.from_hf(build("gpt2"))
    effect = mt.measure(
        model, random_prompts(n=40), mt.ablate(mt.heads("1.0", "1.1", "1.2", "1.3")), mt.metrics.kl_div()
    )
    assert effect.expect_increase(at_least=0.01).holds
    assert effect.flipped is not None and effect.flipped.dtype == bool
    with pytest.raises(mt.ClaimRefuted):
        effect.expect_no_change(within=0.01)
    assert np.any(effect.flipped)


def test_patching_recovery_on_a_real_model():
    hf_model = build("gpt2")
    model = mt.Model.from_hf(hf_model)
    pairs = random_prompts(n=30)
    with torch.no_grad():
        predicted = hf_model(pairs.tokens).logits[:, -1].argmax(-1)  # the clean run's own answer
    prompts = mt.Prompts(pairs.tokens, answers=predicted, corrupted=pairs.corrupted.tokens)
    full = mt.measure(model, prompts, mt.patch(mt.resid(1, "pre"), source="clean"), mt.metrics.logprob)
    assert full.expect_recovery(at_least=0.99).estimate == pytest.approx(1.0, abs=1e-5)
    nothing = mt.measure(model, prompts, mt.patch([], source="clean"), mt.metrics.logprob)
    with pytest.raises(mt.ClaimRefuted):
        nothing.expect_recovery(at_least=0.5)
