"""Where the previous-token head is read: at the induction heads' *key* positions (the token after
an earlier occurrence of the current token carries what preceded it), not at their queries.
Ablating a head at a subset of positions localises where its output is used.

On ``[BOS] + r + r`` the induction heads' keys are in the first copy (``first_half``) and their
queries in the repeat (``second_half``). Ablating on the first copy removes head 0.0's output from
both the keys and the values read there; ``tests/test_zoo_induction.py`` splices it into the keys
alone and finds the whole effect there (K-composition). Model and prompts as in
test_induction_necessity.py.
"""

import pytest

import mitest as mt

PREVIOUS_TOKEN_HEAD = mt.heads("0.0")
REPEAT_LOSS = mt.metrics.loss("second_half")


def test_previous_token_head_is_needed_at_the_keys(mi, induction_model, repeated):
    """Mean-ablating the previous-token head on the first copy only (where the induction heads' keys
    are) raises the loss on the repeat by at least 2 nats."""
    keys = PREVIOUS_TOKEN_HEAD.at("first_half")
    effect = mi.measure(induction_model, repeated, mt.ablate(keys, method="mean"), metric=REPEAT_LOSS)
    effect.expect_increase(at_least=2.0)


def test_previous_token_head_is_irrelevant_at_the_queries(mi, induction_model, repeated):
    """Resample-ablating the previous-token head on the repeat (the induction heads' queries, and the
    positions whose loss is measured) changes the repeat loss by less than 0.15 nats either way:
    under 5% of its 3.4-nat effect at the keys (an equivalence claim, tested with TOST).

    Resampling replaces the head's output with its output on another prompt, so the query still sees
    a realistic previous-token signal, just not this prompt's: exactly the question "is this
    prompt's signal used here?" (it raises the loss by about 0.07 nats). Mean and zero ablation move
    the activation off its distribution and lower the loss by about 0.07 nats; both are also within
    the margin."""
    queries = PREVIOUS_TOKEN_HEAD.at("second_half")
    effect = mi.measure(induction_model, repeated, mt.ablate(queries, method="resample"), metric=REPEAT_LOSS)
    effect.expect_no_change(within=0.15)


@pytest.mark.xfail(raises=mt.ClaimRefuted, strict=True, reason="deliberately false: shows falsification")
def test_previous_token_head_is_needed_at_the_queries(mi, induction_model, repeated):
    """A deliberately FALSE claim, kept to show falsification working: "the induction heads also read
    the previous-token head at their queries (Q-composition), so resample-ablating it on the repeat
    raises the repeat loss by at least 0.5 nats". mitest REFUTES it; the strict xfail marker states
    that we expect exactly that, so the suite passes, and fails if the claim ever stops being refuted."""
    queries = PREVIOUS_TOKEN_HEAD.at("second_half")
    effect = mi.measure(induction_model, repeated, mt.ablate(queries, method="resample"), metric=REPEAT_LOSS)
    effect.expect_increase(at_least=0.5)
