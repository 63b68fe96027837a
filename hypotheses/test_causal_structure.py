"""Structural claims every causal transformer satisfies: a first suite to run against any model.

Each test states a claim in its docstring and decides it on per-prompt values from ``mt.measure``:
exact identities with numpy asserts, statistical claims with ``effect.expect_*`` (HOLDS, or the
test fails with REFUTED / INCONCLUSIVE and the numbers). Model: ``mt.zoo.load("induction")``;
prompts ``[BOS] + r + r[:k]`` whose corrupted twins replace the first copy ``r`` (positions 1-16).
"""

import numpy as np

import mitest as mt

FIRST_COPY = list(range(1, 17))


def test_the_residual_stream_carries_everything(mi, induction_model, next_token):
    """Patching the residual stream entering the last layer from the corrupted run reproduces the
    corrupted prediction exactly: nothing reaches the output except through the residual stream."""
    last = induction_model.dims.n_layers - 1
    effect = mi.measure(
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


def test_the_answer_depends_on_the_first_copy(mi, induction_model, next_token):
    """The first copy matters: patching its tokens in from the corrupted run moves the last-token
    distribution by a KL of at least 1 nat on average."""
    first_copy = mt.resid(0, "pre").at(FIRST_COPY)
    effect = mi.measure(
        induction_model, next_token, mt.patch(first_copy, source="corrupted"), metric=mt.metrics.kl_div()
    )
    effect.expect_increase(at_least=1.0)
