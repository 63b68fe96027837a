"""K-composition: the induction heads read the previous-token head's output at the *key* positions
(the token after an earlier occurrence of the current token knows what preceded it), not at the
query positions. Ablating a head at a subset of positions localises where its output is used.

On ``[BOS] + r + r`` the induction heads' keys are in the first copy (``first_half``) and their
queries in the repeat (``second_half``). Model and prompts as in test_induction_necessity.py.
"""

import pytest

import mitest as mt

INDUCTION_HEADS = mt.heads("1.0", "1.1", "1.2", "1.3")
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
    positions whose loss is measured) changes the repeat loss by less than 0.15 nats either way
    (an equivalence claim, tested with TOST)."""
    queries = PREVIOUS_TOKEN_HEAD.at("second_half")
    effect = mi.measure(induction_model, repeated, mt.ablate(queries, method="resample"), metric=REPEAT_LOSS)
    effect.expect_no_change(within=0.15)


def test_previous_token_head_acts_only_through_the_induction_heads(mi, induction_model, repeated):
    """Once the induction heads are ablated, also ablating the previous-token head changes the repeat
    loss by less than 0.1 nats: its whole effect runs through them (the two are in series)."""
    without_induction = mi.measure(
        induction_model, repeated, mt.ablate(INDUCTION_HEADS, method="mean"), metric=REPEAT_LOSS
    )
    without_both = mi.measure(
        induction_model, repeated, mt.ablate(INDUCTION_HEADS + PREVIOUS_TOKEN_HEAD, method="mean"), metric=REPEAT_LOSS
    )
    added = mt.Effect.from_values(without_induction.intervened, without_both.intervened, metric="repeat loss")
    added.expect_no_change(within=0.1)


@pytest.mark.xfail(raises=mt.ClaimRefuted, strict=True, reason="deliberately false: shows falsification")
def test_previous_token_head_is_needed_at_the_queries(mi, induction_model, repeated):
    """A deliberately FALSE claim, kept to show falsification working: "the induction heads also read
    the previous-token head at their queries (Q-composition), so resample-ablating it on the repeat
    raises the repeat loss by at least 0.5 nats". mitest REFUTES it; the strict xfail marker states
    that we expect exactly that, so the suite passes, and fails if the claim ever stops being refuted."""
    queries = PREVIOUS_TOKEN_HEAD.at("second_half")
    effect = mi.measure(induction_model, repeated, mt.ablate(queries, method="resample"), metric=REPEAT_LOSS)
    effect.expect_increase(at_least=0.5)
