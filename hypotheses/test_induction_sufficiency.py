"""Sufficiency: restoring the induction heads' output restores the answer (activation patching).

Prompts ``[BOS] + r + r[:k]`` are answered by ``r[k]``; each corrupted twin replaces the first copy
``r`` with fresh tokens, so its last position has nothing to induce from. The metric is the logit
difference between the answer and the current token (about 5.5 on clean prompts, 0 on corrupted).
Model: ``mt.zoo.load("induction")``.

In this 2-layer model patching the residual stream entering layer 1 at the last position recovers
nothing (the last token and its predecessor are unchanged), so what the model knows about the answer
arrives through layer-1 attention: the first claim says the induction heads carry all of it at the
answer position; the second that the strongest of them carries a real share on its own.
"""

import mitest as mt

INDUCTION_HEADS = mt.heads("1.0", "1.1", "1.2", "1.3")


def test_induction_heads_recover_the_answer(mi, induction_model, next_token):
    """Patching the induction heads' clean output at the last position into the corrupted run
    recovers at least 90% of the clean logit difference: (patched - corrupted) / (clean - corrupted)."""
    effect = mi.measure(
        induction_model,
        next_token,
        mt.patch(INDUCTION_HEADS.at("last"), source="clean"),
        metric=mt.metrics.logit_diff,
    )
    effect.expect_recovery(at_least=0.9)


def test_the_strongest_induction_head_alone_recovers_a_share(mi, induction_model, next_token):
    """Patching head 1.2 (the highest induction score) alone recovers at least 15% of the logit
    difference (measured: 28%; the threshold leaves room for the suite's family-wise alpha). The
    other heads alone recover 4-7% each."""
    effect = mi.measure(
        induction_model,
        next_token,
        mt.patch(mt.heads("1.2").at("last"), source="clean"),
        metric=mt.metrics.logit_diff,
    )
    effect.expect_recovery(at_least=0.15)
