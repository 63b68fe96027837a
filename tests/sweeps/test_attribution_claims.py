"""Attribution checked by exact patching: the result object, verify(), and expect_agrees_with_patching on
the zoo induction model (measured numbers) and on a planted model whose attention saturates."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mitest as mt
from mitest.zoo import planted

HEADS = mt.patch(mt.heads("*"))
KEYS = mt.patch(mt.heads("*", kind="k"))


@pytest.fixture(autouse=True)
def _threads(one_thread):
    """Tiny matrices run fastest on one thread."""


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mt.NoOpInterventionWarning)  # the zoo model's dead heads 0.1-0.3
        yield


@pytest.fixture(scope="module")
def zoo():
    return mt.zoo.load("induction")


@pytest.fixture(scope="module")
def saturated():
    return planted.saturated_attention()


def test_the_result_has_the_sweeps_cells_frame_and_ranking(zoo):
    model, sets = zoo
    prompts = sets["next_token"]
    attribution = mt.attribute(model, prompts, HEADS, mt.metrics.logit_diff)
    swept = mt.sweep(model, prompts, HEADS, mt.metrics.logit_diff)
    assert attribution.names == swept.names and attribution.scores.shape == (8, len(prompts))
    frame = attribution.frame()
    assert list(frame.columns) == ["cell", "site", "layer", "head", "estimate", "low", "high", "n"]
    assert np.allclose(frame["estimate"], attribution.scores.mean(1))
    assert (frame["low"] <= frame["estimate"]).all() and (frame["estimate"] <= frame["high"]).all()
    assert np.array_equal(attribution["1.2"], attribution.scores[6])
    assert attribution.ranking()[0] == "1.2"  # AtP's largest; exact patching's is 0.0 (below)
    assert attribution.identity == swept.identity  # the same claim identity (structure hashed, no floats)
    with pytest.raises(mt.SiteError, match="closest: 1.2"):
        attribution["1.22"]


def test_verify_patches_the_top_cells_and_a_seeded_sample_in_one_sweep(zoo):
    model, sets = zoo
    attribution = mt.attribute(model, sets["next_token"], HEADS, mt.metrics.logit_diff)
    agreement = attribution.verify(top_k=2, sample=3, seed=1)
    assert len(agreement.names) == 5 and set(attribution.ranking()[:2]) <= set(agreement.names)
    assert agreement.names == attribution.verify(top_k=2, sample=3, seed=1).names
    exact = mt.sweep(model, sets["next_token"], HEADS, mt.metrics.logit_diff)
    for name in agreement.names:
        assert np.array_equal(agreement.exact[name].delta, exact[name].delta)
    frame = agreement.frame()
    assert list(frame["role"]).count("top") == 2
    assert np.allclose(frame["exact"], [exact[name].delta.mean() for name in agreement.names])


# Measured on the zoo induction model, every head patched from the corrupted twins (64 prompts each):
# next_token (logit_diff): AtP's rho with exact patching is 0.30 (AtP gives the previous-token head 0.0,
# whose effect runs through the induction heads' keys, 0.03 where patching measures -5.5), IG's is 1.0.
# repeated (loss on the second half): 0.0 matters not at all there, and AtP's rho is 0.975, as is IG's.
ZOO_RHO = {("next_token", "atp"): 0.3, ("next_token", "ig"): 1.0, ("repeated", "atp"): 0.975, ("repeated", "ig"): 0.975}


@pytest.mark.parametrize("task, method", sorted(ZOO_RHO))
def test_the_zoo_rank_correlations_are_the_published_ones(zoo, task, method):
    model, sets = zoo
    metric = mt.metrics.logit_diff if task == "next_token" else mt.metrics.loss("second_half")
    agreement = mt.attribute(model, sets[task], HEADS, metric, method=method).verify(top_k=1)
    assert agreement.rank_correlation == pytest.approx(ZOO_RHO[task, method], abs=1e-9)


def test_on_the_zoos_next_token_task_atp_is_refuted_and_ig_holds(zoo):
    model, sets = zoo
    prompts = sets["next_token"]
    atp = mt.attribute(model, prompts, HEADS, mt.metrics.logit_diff)
    with pytest.raises(mt.ClaimRefuted) as refuted:
        atp.expect_agrees_with_patching(top_k=2, rank_correlation_at_least=0.9)
    assert any(note.startswith("0.0: top 2 by exact patching") for note in refuted.value.verdict.notes)
    ig = mt.attribute(model, prompts, HEADS, mt.metrics.logit_diff, method="ig")
    assert ig.expect_agrees_with_patching(top_k=2, rank_correlation_at_least=0.9).outcome == mt.HOLDS


def test_on_the_zoos_repeat_loss_atp_holds_at_its_measured_level(zoo):
    model, sets = zoo
    atp = mt.attribute(model, sets["repeated"], HEADS, mt.metrics.loss("second_half"))
    verdict = atp.expect_agrees_with_patching(top_k=1, rank_correlation_at_least=0.8)
    assert verdict.outcome == mt.HOLDS and verdict.low > 0.8


def test_saturated_attention_refutes_atp_and_ig_holds(saturated):
    model, prompts = saturated
    atp = mt.attribute(model, prompts, KEYS, mt.metrics.logit_diff)
    assert abs(atp.scores[0].mean()) < 1e-6  # the saturated head's gradient vanishes ...
    exact = mt.sweep(model, prompts, KEYS, mt.metrics.logit_diff).deltas.mean(1)
    assert exact[0] < -2.0  # ... while patching its key moves the logit difference by about 2.5
    with pytest.raises(mt.ClaimRefuted) as refuted:
        atp.expect_agrees_with_patching(top_k=1, rank_correlation_at_least=0.8)
    assert "blocks.0.attn.hook_k[0]: top 1 by exact patching" in refuted.value.verdict.summary()
    ig = mt.attribute(model, prompts, KEYS, mt.metrics.logit_diff, method="ig", steps=16)
    verdict = ig.expect_agrees_with_patching(top_k=1, rank_correlation_at_least=0.8)
    assert verdict.outcome == mt.HOLDS and verdict.estimate == 1.0
    assert abs(ig.scores[0].mean() - exact[0]) < 0.1 * abs(exact[0])


def test_a_rank_correlation_whose_interval_straddles_the_bound_is_inconclusive(zoo):
    model, sets = zoo
    atp = mt.attribute(model, sets["repeated"], HEADS, mt.metrics.loss("second_half"))
    with pytest.raises(mt.ClaimInconclusive) as inconclusive:
        atp.expect_agrees_with_patching(top_k=1, rank_correlation_at_least=0.9)
    verdict = inconclusive.value.verdict
    assert verdict.low < 0.9 < verdict.high


def test_grouped_prompts_resample_clusters(saturated):
    model, prompts = saturated
    grouped = mt.Prompts(
        prompts.tokens,
        answers=prompts.answers,
        wrong=prompts.wrong,
        corrupted=prompts.corrupted.tokens,
        groups=np.arange(len(prompts)) % 8,
    )
    ig = mt.attribute(model, grouped, KEYS, mt.metrics.logit_diff, method="ig")
    verdict = ig.expect_agrees_with_patching(top_k=1, rank_correlation_at_least=0.8)
    assert verdict.clusters == 8 and "over clusters" in verdict.test


def test_bad_claim_arguments_are_refused(saturated):
    model, prompts = saturated
    atp = mt.attribute(model, prompts, KEYS, mt.metrics.logit_diff)
    with pytest.raises(mt.MitestError, match="top_k"):
        atp.verify(top_k=4)
    with pytest.raises(mt.MitestError, match="sample"):
        atp.verify(top_k=1, sample=0)
    with pytest.raises(mt.MitestError, match="rank_correlation_at_least"):
        atp.expect_agrees_with_patching(top_k=1, rank_correlation_at_least=1.5)


def test_a_sweep_of_only_some_cells_equals_those_cells_of_the_full_sweep(zoo):
    model, sets = zoo
    full = mt.sweep(model, sets["next_token"], HEADS, mt.metrics.logit_diff)
    some = mt.sweep(model, sets["next_token"], HEADS, mt.metrics.logit_diff, only=["1.2", "0.0"])
    assert some.names == ["0.0", "1.2"]
    assert all(np.array_equal(some[name].delta, full[name].delta) for name in some.names)
    with pytest.raises(mt.SiteError, match="closest: 1.2"):
        mt.sweep(model, sets["next_token"], HEADS, mt.metrics.logit_diff, only=["1.22"])
