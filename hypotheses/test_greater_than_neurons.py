"""Neurons and directions of the greater-than circuit: where in MLP0 and in layer 0's attention output
the comparison lives. Model and prompts as in test_greater_than_circuit.py; noising patches in the
value from the corrupted ("01") run at the last position.

Neuron 167 of MLP0 was found by noising each of its 256 neurons one at a time (docs/zoo.md). It is
necessary but does not act alone: the other 255 neurons, noised together, matter as much. A scan on
another seeded prompt set ranks the same neuron first (0.59), so the choice is not fitted to these
prompts.
"""

import torch

import mitest as mt
from mitest.zoo.greater_than import prob_diff


def test_neuron_167_is_necessary(mi, greater_than_model, years):
    """Noising MLP0's neuron 167 alone lowers the probability difference by at least 0.2 (measured
    0.6; MLP0 as a whole: 0.89)."""
    neuron = mt.neurons(0, 167).at("last")
    effect = mi.measure(greater_than_model, years, mt.patch(neuron, source="corrupted"), metric=prob_diff)
    effect.expect_decrease(at_least=0.2)


def test_the_later_year_direction_is_necessary(mi, greater_than_model, years, later_year):
    """Projecting the "later start year" direction (conftest.py) out of layer 0's attention output at
    the last position lowers the probability difference by at least 0.05: the direction carries part
    of the year, not all of it (measured 0.3; 0.23 when the direction is fitted on other prompts)."""
    effect = mi.measure(greater_than_model, years, mt.ablate(later_year), metric=prob_diff)
    effect.expect_decrease(at_least=0.05)


def test_a_random_direction_is_irrelevant(mi, greater_than_model, years, later_year):
    """Control: projecting a random direction (seeded) out of the same activation changes the
    probability difference by less than 0.05 either way (equivalence, TOST)."""
    random_direction = mt.direction(later_year, torch.randn(32, generator=torch.Generator().manual_seed(0)))
    effect = mi.measure(greater_than_model, years, mt.ablate(random_direction), metric=prob_diff)
    effect.expect_no_change(within=0.05)
