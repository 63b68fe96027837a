"""Structural claims every causal transformer satisfies: a first suite to run against any model.

Each test states a claim in its docstring and decides it on per-prompt values from ``mt.measure``:
exact identities with numpy asserts, statistical claims with ``effect.expect_*`` (HOLDS, or the
test fails with REFUTED / INCONCLUSIVE and the numbers). They hold for any causal transformer, so
they also hold on ``induction-early``. Model: ``mt.zoo.load("induction")``; prompts
``[BOS] + r + r[:k]`` whose corrupted twins replace the first copy ``r`` (positions 1-16).
"""

import numpy as np

import mitest as mt


def test_the_residual_stream_carries_everything(induction_model, next_token):
    """Patching the residual stream entering the last layer from the corrupted run reproduces the
    corrupted prediction exactly: nothing reaches the output except through the residual stream.
    (An exact identity, checked with numpy: plain ``mt.measure``, so it is not a statistical claim.)"""
    last = induction_model.dims.n_layers - 1
    effect = mt.measure(
        induction_model,
        next_token,
        mt.patch(mt.resid(last, "pre"), source="corrupted"),
        metric=mt.metrics.logit_diff,
    )
    np.testing.assert_allclose(effect.intervened, effect.corrupted, atol=1e-5)


def test_the_past_does_not_read_the_future(mi, induction_model, next_token):
    """Patching positions 6-16 from the corrupted run leaves the predictions at positions 0-5
    unchanged (equivalence within a KL of 1e-4)."""
    late = mt.resid(0, "pre").at(list(range(6, 17)))
    effect = mi.measure(
        induction_model,
        next_token,
        mt.patch(late, source="corrupted"),
        metric=mt.metrics.kl_div(positions=list(range(6))),
    )
    effect.expect_no_change(within=1e-4)
