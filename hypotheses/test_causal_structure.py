"""Structural claims every causal transformer satisfies: a first suite to run against any model.

Each test states a claim in its docstring and checks it on per-prompt values from ``mt.measure``.
The statistical expectations (``effect.expect_increase(...)``) and the trained reference models
with known circuits arrive with the claims layer and the model zoo; these claims are exact.
"""

import numpy as np

import mitest as mt


def test_the_residual_stream_carries_everything(tiny_gpt2, random_pairs):
    """Patching the residual stream entering the last layer from the corrupted run reproduces the
    corrupted prediction exactly: nothing reaches the output except through the residual stream."""
    last = tiny_gpt2.dims.n_layers - 1
    effect = mt.measure(
        tiny_gpt2, random_pairs, mt.patch(mt.resid(last, "pre"), source="corrupted"), metric=mt.metrics.logit_diff
    )
    np.testing.assert_allclose(effect.intervened, effect.corrupted, atol=1e-5)


def test_the_past_does_not_read_the_future(tiny_gpt2, random_pairs):
    """Patching every position from 6 on leaves the predictions at positions 0-5 unchanged."""
    late = [mt.resid(0, "post").at(list(range(6, 12)))]
    effect = mt.measure(
        tiny_gpt2, random_pairs, mt.patch(late, source="corrupted"), metric=mt.metrics.kl_div(positions=list(range(6)))
    )
    np.testing.assert_allclose(effect.intervened, 0.0, atol=1e-6)


def test_the_answer_depends_on_the_corrupted_span(tiny_gpt2, random_pairs):
    """The corrupted tokens matter: patching them in moves the last-token distribution on every prompt."""
    span = mt.resid(0, "pre").at(list(range(6, 12)))
    effect = mt.measure(tiny_gpt2, random_pairs, mt.patch(span, source="corrupted"), metric=mt.metrics.kl_div())
    assert (effect.intervened > 1e-3).all()
