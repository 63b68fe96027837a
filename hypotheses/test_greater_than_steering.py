"""Steering: adding a "later year" direction at the mover head's output shifts the predicted year.

The direction is the difference of mean layer-0 attention outputs at the last position between
prompts whose start year is 50 or later and those before 50, read with ``mt.activations``. Adding
``coef`` times it should make the model answer as if the start year were later: the expected year
it predicts must rise with ``coef`` (a dose-response claim). Model and prompts as in
test_greater_than_circuit.py.
"""

import pytest
import torch

import mitest as mt
from mitest.zoo.greater_than import FIRST_YEAR_ID, YEAR_OFFSET

SITE = mt.site("blocks.0.hook_attn_out").at("last")
COEFFICIENTS = (-1.0, -0.5, 0.5, 1.0, 2.0)


def expected_year(logits, prompts):
    """The mean two-digit year the model predicts: sum of year × P(year), over the 100 year tokens."""
    rows = torch.arange(len(prompts))
    year_logits = logits[rows, prompts.answer_positions, FIRST_YEAR_ID : FIRST_YEAR_ID + 100]
    return (year_logits.float().softmax(-1) * torch.arange(100.0)).sum(-1)


@pytest.fixture(scope="module")
def later_year(greater_than_model, years):
    outputs = mt.activations(greater_than_model, years, SITE)
    start_year = years.ids[:, -1 - YEAR_OFFSET] - FIRST_YEAR_ID
    return mt.direction(SITE, outputs[start_year >= 50].mean(0) - outputs[start_year < 50].mean(0))


def test_steering_towards_later_years_raises_the_predicted_year(mi, greater_than_model, years, later_year):
    """Across coefficients -1, -0.5, 0.5, 1 and 2, the expected predicted year rises on each prompt
    (mean Kendall tau between coefficient and expected year significantly above 0)."""
    effects = [
        mi.measure(greater_than_model, years, mt.steer(later_year, coef=c), metric=expected_year) for c in COEFFICIENTS
    ]
    mt.expect_monotonic(effects, increasing=True)


def test_one_unit_of_steering_moves_the_year_by_at_least_five(mi, greater_than_model, years, later_year):
    """At coefficient 1 the expected predicted year rises by at least 5 years."""
    effect = mi.measure(greater_than_model, years, mt.steer(later_year, coef=1.0), metric=expected_year)
    effect.expect_increase(at_least=5.0)
