"""Neurons and directions of the greater-than circuit: where in MLP0 and in the mover's output the
comparison lives. Model and prompts as in test_greater_than_circuit.py; noising patches in the
value from the corrupted ("01") run at the last position.

Neuron 167 of MLP0 was found by noising each of its 256 neurons one at a time (docs/zoo.md); the
claims below test it on the bundled prompt set.
"""

import torch

import mitest as mt
from mitest.zoo.greater_than import FIRST_YEAR_ID, YEAR_OFFSET, prob_diff

SITE = mt.site("blocks.0.hook_attn_out").at("last")


def test_one_neuron_carries_most_of_the_comparison(mi, greater_than_model, years):
    """Noising MLP0's neuron 167 alone lowers the probability difference by at least 0.2 (measured 0.6; MLP0 as a
    whole: 0.89)."""
    neuron = mt.neurons(0, 167).at("last")
    effect = mi.measure(greater_than_model, years, mt.patch(neuron, source="corrupted"), metric=prob_diff)
    effect.expect_decrease(at_least=0.2)


def test_the_year_direction_is_necessary(mi, greater_than_model, years):
    """Projecting the "later year" direction (mean layer-0 attention output for start years >= 50 minus
    < 50) out of the last position's attention output lowers the probability difference by at least
    0.05: the direction carries part of the year, not all of it (about 0.3)."""
    outputs = mt.activations(greater_than_model, years, SITE)
    start_year = years.ids[:, -1 - YEAR_OFFSET] - FIRST_YEAR_ID
    year_direction = mt.direction(SITE, outputs[start_year >= 50].mean(0) - outputs[start_year < 50].mean(0))
    effect = mi.measure(greater_than_model, years, mt.ablate(year_direction), metric=prob_diff)
    effect.expect_decrease(at_least=0.05)


def test_a_random_direction_is_irrelevant(mi, greater_than_model, years):
    """Control: projecting a random direction (seeded) out of the same activation changes the
    probability difference by less than 0.05 either way (equivalence, TOST)."""
    random_direction = mt.direction(SITE, torch.randn(32, generator=torch.Generator().manual_seed(0)))
    effect = mi.measure(greater_than_model, years, mt.ablate(random_direction), metric=prob_diff)
    effect.expect_no_change(within=0.05)
