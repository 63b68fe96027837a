"""Induction heads (Olsson et al. 2022): on repeated random tokens, the model's ability to predict the
repeat lives in its layer-1 induction heads and the layer-0 previous-token head they read.

Model: ``mt.zoo.load("induction")``, a 2-layer attention-only GPT-2 (model card:
mitest/zoo/weights/induction/README.md). Prompts: ``[BOS] + r + r`` with ``r`` 16 random tokens;
the metric is the mean next-token loss on the repeat (``loss("second_half")``), about 0.7 nats on
the clean model and log 64 = 4.2 nats for a model that cannot use the first copy.
"""

import pytest

import mitest as mt

INDUCTION_HEADS = mt.heads("1.0", "1.1", "1.2", "1.3")
PREVIOUS_TOKEN_HEAD = mt.heads("0.0")
REPEAT_LOSS = mt.metrics.loss("second_half")


def test_the_model_reads_the_first_copy(mi, induction_model, next_token):
    """The behaviour exists: replacing the first copy (patching the corrupted tokens in at positions
    1-16) moves the last-token distribution by a KL of at least 1 nat on average."""
    first_copy = mt.resid(0, "pre").at(list(range(1, 17)))
    effect = mi.measure(
        induction_model, next_token, mt.patch(first_copy, source="corrupted"), metric=mt.metrics.kl_div()
    )
    effect.expect_increase(at_least=1.0)


def test_induction_heads_are_necessary(mi, induction_model, repeated):
    """Mean-ablating the four layer-1 induction heads raises the loss on the repeat by at least 2 nats."""
    effect = mi.measure(induction_model, repeated, mt.ablate(INDUCTION_HEADS, method="mean"), metric=REPEAT_LOSS)
    effect.expect_increase(at_least=2.0)


@pytest.mark.mitest(claims=4)
def test_each_induction_head_contributes(mi, induction_model, repeated):
    """Each induction head matters on its own: mean-ablating any one of them raises the repeat loss by
    at least 0.1 nats (four claims in one test, declared to the plugin with the mitest marker)."""
    for head in ("1.0", "1.1", "1.2", "1.3"):
        effect = mi.measure(induction_model, repeated, mt.ablate(mt.heads(head), method="mean"), metric=REPEAT_LOSS)
        effect.expect_increase(at_least=0.1)


def test_previous_token_head_is_necessary(mi, induction_model, repeated):
    """Mean-ablating the previous-token head 0.0 raises the repeat loss by at least 2 nats: without it
    the induction heads cannot find where to look."""
    effect = mi.measure(induction_model, repeated, mt.ablate(PREVIOUS_TOKEN_HEAD, method="mean"), metric=REPEAT_LOSS)
    effect.expect_increase(at_least=2.0)
