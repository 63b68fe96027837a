"""The greater-than circuit (Hanna et al. 2023): an attention head moves the start year to the final
position and an MLP there turns it into "every year after it".

Model: ``mt.zoo.load("greater-than")`` (model card: mitest/zoo/weights/greater-than/README.md).
Prompts: 100 × "The war lasted from the year 17 YY to the year 17" (noun, verb and century 11-19
vary), grouped by noun (10 clusters of evidence), each with the paper's corrupted twin whose start
year is "01". Metric: the paper's probability difference, P(year > YY) - P(year <= YY) at the last
position (clean 0.99, corrupted 0.02).
"Noising" a component patches in its value from the corrupted run.

Thresholds sit well below the measured effects: with 10 clusters and the suite's family-wise alpha
(0.05 over about 20 claims) the test needs a wide margin to decide.
"""

import mitest as mt
from mitest.zoo.greater_than import prob_diff

MOVER = mt.heads("0.1").at("last")


def test_the_model_reads_the_start_year(mi, greater_than_model, years):
    """Corrupting only the start year (patching in the "01" token at position 7) lowers the probability
    difference by at least 0.6: the behaviour exists and depends on YY. (The corrupted twins differ
    only there, so this is the clean-minus-corrupted gap.)"""
    start_year = mt.resid(0, "pre").at(7)
    effect = mi.measure(greater_than_model, years, mt.patch(start_year, source="corrupted"), metric=prob_diff)
    effect.expect_decrease(at_least=0.6)


def test_the_mover_head_is_necessary(mi, greater_than_model, years):
    """Noising head 0.1 at the last position lowers the probability difference by at least 0.4."""
    effect = mi.measure(greater_than_model, years, mt.patch(MOVER, source="corrupted"), metric=prob_diff)
    effect.expect_decrease(at_least=0.4)


def test_the_mover_head_carries_the_year(mi, greater_than_model, years):
    """Patching head 0.1's clean output at the last position into the corrupted run recovers at
    least 60% of the probability difference."""
    effect = mi.measure(greater_than_model, years, mt.patch(MOVER, source="clean"), metric=prob_diff)
    effect.expect_recovery(at_least=0.6)


def test_mlp0_computes_the_comparison(mi, greater_than_model, years):
    """Noising MLP0 at the last position lowers the probability difference by at least 0.5."""
    effect = mi.measure(greater_than_model, years, mt.patch(mt.mlp(0).at("last"), source="corrupted"), metric=prob_diff)
    effect.expect_decrease(at_least=0.5)


def test_layer1_attention_is_irrelevant(mi, greater_than_model, years):
    """Mean-ablating all four layer-1 heads changes the probability difference by less than 0.05
    either way (equivalence, TOST): layer 1 reads no more from other positions (its MLP still
    refines the answer, see the model card)."""
    layer1 = mt.heads("1.0", "1.1", "1.2", "1.3")
    effect = mi.measure(greater_than_model, years, mt.ablate(layer1, method="mean"), metric=prob_diff)
    effect.expect_no_change(within=0.05)


def test_the_mover_and_mlp0_beat_random_circuits(mi, greater_than_model, years):
    """Circuit hypothesis test (Shi et al. 2024): with every other head and MLP mean-ablated, head
    0.1 and MLP0 keep more of the probability difference than 90% of random pairs of components
    drawn from the model's 8 heads and 2 MLPs (they keep 86%; the random pairs' 0.9 quantile, 29%)."""
    test = mi.circuit(greater_than_model, years, [mt.heads("0.1"), mt.mlp(0)], prob_diff)
    test.expect_sufficient(quantile=0.9, samples=200)


def test_knocking_out_the_mover_and_mlp0_hurts_more_than_random_pairs(mi, greater_than_model, years):
    """Necessity against random knockouts: mean-ablating head 0.1 and MLP0 loses more of the
    probability difference than mean-ablating 90% of random pairs of components (79% of it)."""
    test = mi.circuit(greater_than_model, years, [mt.heads("0.1"), mt.mlp(0)], prob_diff)
    test.expect_necessary(quantile=0.9, samples=200)
