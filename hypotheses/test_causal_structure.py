"""Structural claims every causal transformer satisfies: a first suite to run against any model.

Each test states a claim in its docstring and decides it on per-prompt values from ``mt.measure``:
exact identities with numpy asserts, statistical claims with ``effect.expect_*`` (HOLDS, or the
test fails with REFUTED / INCONCLUSIVE and the numbers). Trained reference models with known
circuits arrive with the model zoo.
"""

import numpy as np

import mitest as mt


def test_the_residual_stream_carries_everything(mi, tiny_gpt2, random_pairs):
    """Patching the residual stream entering the last layer from the corrupted run reproduces the
    corrupted prediction exactly: nothing reaches the output except through the residual stream."""
    last = tiny_gpt2.dims.n_layers - 1
    effect = mi.measure(
        tiny_gpt2, random_pairs, mt.patch(mt.resid(last, "pre"), source="corrupted"), metric=mt.metrics.logit_diff
    )
    np.testing.assert_allclose(effect.intervened, effect.corrupted, atol=1e-5)


def test_the_past_does_not_read_the_future(mi, tiny_gpt2, random_pairs):
    """Patching every position from 6 on leaves the predictions at positions 0-5 unchanged
    (equivalence within a KL of 1e-4)."""
    late = [mt.resid(0, "post").at(list(range(6, 12)))]
    effect = mi.measure(
        tiny_gpt2, random_pairs, mt.patch(late, source="corrupted"), metric=mt.metrics.kl_div(positions=list(range(6)))
    )
    effect.expect_no_change(within=1e-4)


def test_the_answer_depends_on_the_corrupted_span(mi, tiny_gpt2, random_pairs):
    """The corrupted tokens matter: patching them in moves the last-token distribution by a KL of
    at least 0.05 nats on average."""
    span = mt.resid(0, "pre").at(list(range(6, 12)))
    effect = mi.measure(tiny_gpt2, random_pairs, mt.patch(span, source="corrupted"), metric=mt.metrics.kl_div())
    effect.expect_increase(at_least=0.05)
