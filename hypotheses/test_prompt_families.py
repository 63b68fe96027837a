"""Claims over whole families of prompts, not one fixed prompt set (``mt.strategies``).

A per-prompt property (``mt.expect_for_all``) must hold on every prompt of a family: Hypothesis
searches the family for a prompt that breaks it and shrinks that prompt to the simplest one, which
the failure message and the report show. An aggregate claim draws its prompts from a family with
the suite's seed. Models as in test_induction_necessity.py and test_greater_than_circuit.py.
"""

import pytest
import torch

import mitest as mt
from mitest.zoo.greater_than import FIRST_YEAR_ID, YEAR_OFFSET

NEXT_TOKEN = mt.zoo.induction.family()  # [BOS] + r + r[:k], answered by r[k]
INDUCTION_HEADS = mt.heads("1.0", "1.1", "1.2", "1.3")


def last_logits(model: mt.Model, prompt: mt.Prompts) -> torch.Tensor:
    with torch.no_grad():
        return model.hf_model(prompt.tokens).logits[0, -1]


def test_the_model_completes_every_repeat(mi, induction_model):
    """On every prompt [BOS] + r + r[:k] (r: 16 distinct tokens, k from 4 to 15) the model's top
    prediction is r[k], the token that followed r[k-1] the first time."""

    def predicts_the_answer(prompt):
        return int(last_logits(induction_model, prompt).argmax()) == int(prompt.answers[0])

    mt.expect_for_all(NEXT_TOKEN, predicts_the_answer, model=induction_model)


def test_ablating_the_induction_heads_lowers_every_answer(mi, induction_model, repeated):
    """On every prompt of the family, mean-ablating the induction heads lowers the answer's log-prob."""
    ablation = mt.ablate(INDUCTION_HEADS, method="mean", reference=repeated)

    def lowers_the_answer(prompt):
        effect = mi.measure(induction_model, prompt, ablation, metric=mt.metrics.logprob)
        return bool(effect.intervened[0] < effect.clean[0])

    mt.expect_for_all(NEXT_TOKEN, lowers_the_answer, model=induction_model)


def test_induction_heads_are_necessary_across_the_family(mi, induction_model, repeated):
    """On 200 prompts drawn from the family (seeded), mean-ablating the induction heads lowers the
    logit difference of the answer over the current token by at least 2 on average."""
    prompts = NEXT_TOKEN.sample(200, seed=mi.seed)
    ablation = mt.ablate(INDUCTION_HEADS, method="mean", reference=repeated)
    effect = mi.measure(induction_model, prompts, ablation, metric=mt.metrics.logit_diff)
    effect.expect_decrease(at_least=2.0)


@pytest.mark.xfail(raises=mt.ClaimRefuted, strict=True, reason="deliberately false: shows a shrunk counterexample")
def test_the_top_prediction_is_always_the_next_year(mi, greater_than_model):
    """A deliberately FALSE claim: "the model's top prediction is always YY + 1". It spreads its
    probability over the later years, so Hypothesis finds a prompt where it is not, and shrinks it to
    the simplest one (first noun, verb and century; smallest year); the failure message shows it."""
    family = mt.zoo.greater_than.family(greater_than_model.tokenizer)

    def top_is_next_year(prompt):
        year = int(prompt.tokens[0, -1 - YEAR_OFFSET]) - FIRST_YEAR_ID
        return int(last_logits(greater_than_model, prompt).argmax()) - FIRST_YEAR_ID == year + 1

    mt.expect_for_all(family, top_is_next_year, model=greater_than_model)
