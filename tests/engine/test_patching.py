"""Activation patching identities and ablation equivalences on every family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mitest as mt
from tests.builders import random_prompts


def _layer_sites(model: mt.Model, layer: int) -> list[str]:
    return [name for name in model.sites() if name.startswith(f"blocks.{layer}.")]


@pytest.mark.parametrize("layer", [0, 1])
def test_patching_every_site_of_a_layer_from_clean_reproduces_the_clean_run(model, prompts, layer):
    sites = _layer_sites(model, layer)
    assert len(sites) >= 10
    # Once resid_pre is patched, every later site of the layer already holds its clean value:
    # mitest must say so rather than report those patches as having done something.
    with pytest.warns(mt.NoOpInterventionWarning, match="hook_mlp_out"):
        effect = mt.measure(model, prompts, mt.patch(sites, source="clean"), mt.metrics.kl_div("all"))
    np.testing.assert_allclose(effect.intervened, 0.0, atol=1e-6)
    corrupted_kl = mt.measure(model, prompts, mt.patch([], source="clean"), mt.metrics.kl_div("all")).intervened
    assert corrupted_kl.min() > 1e-3, "the corrupted run must differ from the clean run for this test to mean anything"


@pytest.mark.parametrize("where", ["pre", "mid", "post"])
def test_patching_one_residual_point_from_clean_reproduces_the_clean_run(model, prompts, where):
    site = f"blocks.1.hook_resid_{where}"
    if site not in model.sites():
        pytest.skip("parallel-residual models have no resid_mid")
    effect = mt.measure(model, prompts, mt.patch(site, source="clean"), mt.metrics.logit_diff)
    np.testing.assert_allclose(effect.intervened, effect.clean, atol=1e-5)


def test_patching_nothing_reproduces_the_corrupted_run(model, prompts):
    effect = mt.measure(model, prompts, mt.patch([], source="clean"), mt.metrics.logit_diff)
    np.testing.assert_array_equal(effect.intervened, effect.corrupted)
    assert effect.hooks == ()


def test_noising_patch_of_the_whole_residual_gives_the_corrupted_run(model, prompts):
    effect = mt.measure(model, prompts, mt.patch("blocks.1.hook_resid_pre", source="corrupted"), mt.metrics.logit_diff)
    np.testing.assert_allclose(effect.intervened, effect.corrupted, atol=1e-5)


def test_patching_a_single_position_changes_only_from_that_position_on(model, prompts):
    if model.family.name == "bert":
        pytest.skip("bidirectional attention spreads a patch to every position")
    site = mt.resid(0, "post").at(5)
    seen = []

    def keep(logits, batch):
        seen.append(logits.clone())
        return logits[:, -1, 0]

    mt.measure(model, prompts, mt.patch(site, source="corrupted"), keep)
    clean, patched = seen[0], seen[-1]
    torch.testing.assert_close(patched[:, :5], clean[:, :5], atol=1e-6, rtol=0)
    assert (patched[:, 5:] - clean[:, 5:]).abs().amax() > 1e-3


def test_mean_ablation_with_one_reference_prompt_equals_patching_from_it(model, prompts):
    reference = mt.Prompts(prompts.tokens[:1])
    tiled = mt.Prompts(prompts.tokens[:1].repeat(len(prompts), 1))
    sites = mt.heads("0.1", "1.3") + (mt.mlp(1),)
    by_mean = mt.measure(model, prompts, mt.ablate(sites, "mean", reference=reference), mt.metrics.logit_diff)
    by_patch = mt.measure(model, prompts, mt.patch(sites, source=tiled), mt.metrics.logit_diff)
    np.testing.assert_allclose(by_mean.intervened, by_patch.intervened, atol=1e-5)
    assert np.abs(by_mean.delta).max() > 1e-3


def test_resampling_from_the_paired_counterfactual_equals_patching_from_it(model, prompts):
    sites = mt.heads("1.0", "1.2")
    resampled = mt.measure(model, prompts, mt.ablate(sites, "resample", reference="corrupted"), mt.metrics.logit_diff)
    patched = mt.measure(model, prompts, mt.patch(sites, source="corrupted"), mt.metrics.logit_diff)
    np.testing.assert_array_equal(resampled.intervened, patched.intervened)


def test_resampling_is_seeded_and_draws_from_other_prompts(model):
    prompts = random_prompts(n=8, corrupted=False)
    site = mt.resid(1, "pre")
    first = mt.measure(model, prompts, mt.ablate(site, "resample", seed=3), mt.metrics.logit_diff)
    again = mt.measure(model, prompts, mt.ablate(site, "resample", seed=3), mt.metrics.logit_diff)
    other = mt.measure(model, prompts, mt.ablate(site, "resample", seed=4), mt.metrics.logit_diff)
    np.testing.assert_array_equal(first.intervened, again.intervened)
    assert not np.allclose(first.intervened, other.intervened)
    # Replacing the whole residual stream by another prompt's makes each prompt score like a donor.
    assert not np.isclose(first.intervened, first.clean, atol=1e-4).any()


def test_resampling_without_a_same_length_donor_is_a_clear_error(model):
    prompts = mt.Prompts([[1, 2, 3], [4, 5, 6, 7]], answers=[1, 2], wrong=[3, 4])
    with pytest.raises(mt.InterventionError, match="has that length"):
        mt.measure(model, prompts, mt.ablate(mt.resid(0), "resample"), mt.metrics.logit_diff)


def test_mean_over_positions_differs_from_per_position_mean(model, prompts):
    site = mt.heads("0.0")
    per_position = mt.measure(model, prompts, mt.ablate(site, "mean"), mt.metrics.logit_diff)
    pooled = mt.measure(model, prompts, mt.ablate(site, "mean", per_position=False), mt.metrics.logit_diff)
    assert not np.allclose(per_position.intervened, pooled.intervened)


def test_steering_adds_the_scaled_vector(model, prompts):
    vector = torch.randn(32, generator=torch.Generator().manual_seed(0))
    d = mt.direction("blocks.1.hook_resid_pre", vector)
    with pytest.warns(mt.NoOpInterventionWarning, match="Steer"):
        at_zero = mt.measure(model, prompts, mt.steer(d, coef=0.0), mt.metrics.logit_diff)
    np.testing.assert_array_equal(at_zero.intervened, at_zero.clean)
    once = mt.measure(model, prompts, mt.steer(d, coef=2.0), mt.metrics.logit_diff)
    in_two_steps = mt.measure(model, prompts, mt.steer(d, coef=1.0) + mt.steer(d, coef=1.0), mt.metrics.logit_diff)
    np.testing.assert_allclose(once.intervened, in_two_steps.intervened, atol=1e-5)
    assert np.abs(once.delta).max() > 1e-3
