"""mt.expect_selective: a neuron's activation differs between two prompt sets (Welch t), on the zoo's
greater-than model, whose MLP0 neuron 167 computes "years after YY"."""

from __future__ import annotations

import numpy as np
import pytest

import mitest as mt
from mitest.features.neurons import neuron_values
from mitest.zoo import greater_than


@pytest.fixture(scope="module")
def zoo():
    model, sets = mt.zoo.load("greater-than")
    years = sets["years"]
    start = greater_than.start_years(years)
    rows = [years.tokens[i, : int(years.lengths[i])].tolist() for i in range(len(years))]
    early = mt.Prompts([r for r, y in zip(rows, start, strict=True) if y < 50])
    late = mt.Prompts([r for r, y in zip(rows, start, strict=True) if y >= 50])
    return model, early, late


NEURON = mt.neurons(0, 167).at("last")


def test_values_are_the_activation_at_the_chosen_positions(zoo):
    model, early, _ = zoo
    values = neuron_values(model, early, NEURON)
    assert np.allclose(values, mt.activations(model, early, NEURON)[:, 0].numpy().astype(np.float64))
    everywhere = neuron_values(model, early, mt.neurons(0, 167))
    assert np.allclose(everywhere, mt.activations(model, early, mt.neurons(0, 167))[..., 0].mean(1).numpy(), atol=1e-6)


def test_neuron_167_is_selective_for_early_years(zoo):
    model, early, late = zoo
    verdict = mt.expect_selective(model, NEURON, early, late, at_least=0.2)
    assert verdict.outcome == mt.HOLDS and verdict.test.startswith("Welch t (53 vs 47")
    assert verdict.estimate == pytest.approx(0.486, abs=0.001)
    with pytest.raises(mt.ClaimRefuted):
        mt.expect_selective(model, NEURON, late, early, at_least=0.0)  # the other way round


def test_small_sets_are_not_decided(zoo):
    model, early, late = zoo
    with pytest.raises(mt.ClaimInconclusive, match="each needs 29"):
        mt.expect_selective(model, NEURON, early[:10], late, at_least=0.1)


def test_refusals(zoo):
    model, early, late = zoo
    with pytest.raises(mt.SiteError, match="one neuron"):
        mt.expect_selective(model, mt.neurons(0, 1, 2), early, late, at_least=0.1)
    grouped = mt.Prompts(early.tokens, attention_mask=early.attention_mask, groups=[i % 3 for i in range(len(early))])
    with pytest.raises(mt.MitestError, match="groups"):
        mt.expect_selective(model, NEURON, grouped, late, at_least=0.1)
