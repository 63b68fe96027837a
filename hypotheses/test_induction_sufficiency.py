"""Sufficiency: the induction heads carry everything the first copy tells the model about the answer.

Prompts ``[BOS] + r + r[:k]`` are answered by ``r[k]``; each corrupted twin replaces the first copy
``r`` with fresh tokens, so its last position has nothing to induce from. The metric is the logit
difference between the answer and the current token (about 5.5 on clean prompts, 0 on corrupted).
Model: ``mt.zoo.load("induction")``.
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
