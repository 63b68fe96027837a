"""Metrics against direct computations on known logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mitest as mt
from tests.builders import random_prompts

LOGITS = torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(0))
PROMPTS = mt.Prompts([[1, 2, 3, 4, 5], [6, 5, 4, 3, 2], [1, 1, 2, 0, 0][:3]], answers=[2, 3, 4], wrong=[5, 6, 0])


def test_logit_diff_reads_each_answer_position():
    values = mt.metrics.logit_diff(LOGITS, PROMPTS)
    positions = [4, 4, 2]
    expected = [
        LOGITS[i, p, a] - LOGITS[i, p, w]
        for i, (p, a, w) in enumerate(zip(positions, [2, 3, 4], [5, 6, 0], strict=True))
    ]
    torch.testing.assert_close(values, torch.stack(expected))


def test_logprob_prob_and_accuracy():
    logprobs = LOGITS.log_softmax(-1)
    expected = torch.stack([logprobs[0, 4, 2], logprobs[1, 4, 3], logprobs[2, 2, 4]])
    torch.testing.assert_close(mt.metrics.logprob(LOGITS, PROMPTS), expected)
    torch.testing.assert_close(mt.metrics.prob(LOGITS, PROMPTS), expected.exp())
    top = torch.stack([LOGITS[0, 4].argmax(), LOGITS[1, 4].argmax(), LOGITS[2, 2].argmax()])
    torch.testing.assert_close(mt.metrics.top1_accuracy(LOGITS, PROMPTS), (top == PROMPTS.answers).float())


def test_loss_averages_next_token_loss_over_chosen_real_tokens():
    logprobs = LOGITS.log_softmax(-1)
    tokens = PROMPTS.tokens

    def token_loss(i, t):  # loss of predicting token t of prompt i from position t-1
        return -logprobs[i, t - 1, tokens[i, t]]

    values = mt.metrics.loss()(LOGITS, PROMPTS)
    expected_0 = torch.stack([token_loss(0, t) for t in range(1, 5)]).mean()
    expected_2 = torch.stack([token_loss(2, t) for t in range(1, 3)]).mean()  # padding excluded
    torch.testing.assert_close(values[[0, 2]], torch.stack([expected_0, expected_2]))
    second_half = mt.metrics.loss("second_half")(LOGITS, PROMPTS)
    torch.testing.assert_close(second_half[0], torch.stack([token_loss(0, 3), token_loss(0, 4)]).mean())


def test_loss_with_no_target_position_is_an_error():
    with pytest.raises(mt.MetricError, match="selects no token"):
        mt.metrics.loss(0)(LOGITS, PROMPTS)


def test_kl_divergence_is_zero_against_itself_and_matches_scipy():
    from scipy.stats import entropy

    kl = mt.metrics.kl_div()
    reference = kl.reference(LOGITS, PROMPTS)
    torch.testing.assert_close(kl(LOGITS, PROMPTS, reference), torch.zeros(3), atol=1e-6, rtol=0)
    other = LOGITS.flip(-1)
    p = LOGITS[0, 4].softmax(-1).numpy()
    q = other[0, 4].softmax(-1).numpy()
    assert kl(other, PROMPTS, reference)[0].item() == pytest.approx(entropy(p, q), rel=1e-4)


def test_metrics_without_answers_say_what_is_missing():
    with pytest.raises(mt.MetricError, match="wrong="):
        mt.metrics.logit_diff(LOGITS, mt.Prompts(PROMPTS.tokens, answers=[1, 2, 3]))


def test_user_callables_are_metrics(model, prompts):
    effect = mt.measure(model, prompts, mt.ablate(mt.heads("1.0")), lambda logits, batch: logits[:, -1].max(-1).values)
    assert effect.metric == "<lambda>" and effect.n == len(prompts)
    with pytest.raises(mt.MetricError, match="one number per prompt"):
        mt.measure(model, prompts, mt.ablate(mt.heads("1.0")), lambda logits, batch: logits[:, -1])


def test_the_same_lambda_source_is_not_confused_in_the_cache(model):
    prompts = random_prompts(corrupted=False)
    first = mt.measure(model, prompts, mt.ablate(mt.heads("1.0")), lambda logits, batch: logits[:, -1, 0])
    second = mt.measure(model, prompts, mt.ablate(mt.heads("1.0")), lambda logits, batch: logits[:, -1, 1])
    assert not np.allclose(first.clean, second.clean)
