"""Steering: adding a "later start year" direction to layer 0's attention output at the last position
shifts the year the model predicts.

The direction (the ``later_year`` fixture in conftest.py) is the mean layer-0 attention output at the
last position for prompts whose start year is 50 or later minus that for prompts before 50, read
with ``mt.activations``. It is fitted on the same prompts the claims use; fitted on another seeded
prompt set instead, it moves the year by 11 at coefficient 1 (12.97 here). Model and prompts as in
test_greater_than_circuit.py.
"""

import torch

import mitest as mt
from mitest.zoo.greater_than import FIRST_YEAR_ID, YEARS

COEFFICIENTS = (-1.0, -0.5, 0.5, 1.0, 2.0)


def expected_year(logits: torch.Tensor, prompts: mt.Prompts) -> torch.Tensor:
    """The mean two-digit year the model predicts: the sum of year × P(year) over the year tokens."""
    rows = torch.arange(len(prompts), device=logits.device)
    year_logits = logits[rows, prompts.answer_positions.to(logits.device), FIRST_YEAR_ID : FIRST_YEAR_ID + len(YEARS)]
    return (year_logits.float().softmax(-1) * torch.arange(len(YEARS), device=logits.device)).sum(-1)


def test_steering_towards_later_years_raises_the_predicted_year(mi, greater_than_model, years, later_year):
    """Dose-response: across coefficients -1, -0.5, 0.5, 1 and 2 the expected predicted year rises
    (per prompt, the Kendall tau between coefficient and expected year; the claim is that its mean is
    above 0). Prompts with very early or very late start years saturate, so not every prompt rises
    at every step."""
    effects = [
        mi.measure(greater_than_model, years, mt.steer(later_year, coef=c), metric=expected_year) for c in COEFFICIENTS
    ]
    mt.expect_monotonic(effects, increasing=True)


def test_one_unit_of_steering_moves_the_year_by_at_least_five(mi, greater_than_model, years, later_year):
    """At coefficient 1 the expected predicted year rises by at least 5 years on average."""
    effect = mi.measure(greater_than_model, years, mt.steer(later_year, coef=1.0), metric=expected_year)
    effect.expect_increase(at_least=5.0)
