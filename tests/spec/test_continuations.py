"""Multi-token answers: continuations appended to prompts, teacher-forced, scored per token and summed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mitest as mt
from tests.builders import random_gpt2

LOGITS = torch.randn(2, 5, 9, generator=torch.Generator().manual_seed(3))


def test_continuations_are_appended_and_scored_by_hand():
    prompts = mt.Prompts([[1, 2, 3], [4, 5]], continuations=[[6, 2], [3]])
    assert prompts.tokens.tolist() == [[1, 2, 3, 6, 2], [4, 5, 3, 0, 0]]
    assert prompts.continuation_lengths.tolist() == [2, 1]
    assert prompts.answers.tolist() == [6, 3] and prompts.answer_positions.tolist() == [2, 1]
    lp = LOGITS.log_softmax(-1)
    per_token = mt.metrics.continuation_token_logprobs(LOGITS, prompts)
    torch.testing.assert_close(per_token[0], torch.stack([lp[0, 2, 6], lp[0, 3, 2]]))
    assert per_token[1, 0] == lp[1, 1, 3] and per_token[1, 1].isnan()
    torch.testing.assert_close(
        mt.metrics.continuation_logprob()(LOGITS, prompts), torch.stack([lp[0, 2, 6] + lp[0, 3, 2], lp[1, 1, 3]])
    )
    torch.testing.assert_close(
        mt.metrics.continuation_logprob("mean")(LOGITS, prompts),
        torch.stack([(lp[0, 2, 6] + lp[0, 3, 2]) / 2, lp[1, 1, 3]]),
    )
    torch.testing.assert_close(
        mt.metrics.continuation_logprob(token=-1)(LOGITS, prompts), torch.stack([lp[0, 3, 2], lp[1, 1, 3]])
    )
    with pytest.raises(mt.MetricError, match="has 1 tokens"):
        mt.metrics.continuation_logprob(token=1)(LOGITS, prompts)


def test_wrong_continuations_set_the_answer_where_the_two_part_ways():
    prompts = mt.Prompts([[1, 2, 3], [4, 5]], continuations=[[6, 2, 7], [3]], wrong_continuations=[[6, 8], [5, 1]])
    assert prompts.answers.tolist() == [2, 3] and prompts.wrong.tolist() == [8, 5]
    assert prompts.answer_positions.tolist() == [3, 1]  # predicting the first differing token
    expected = torch.stack([LOGITS[0, 3, 2] - LOGITS[0, 3, 8], LOGITS[1, 1, 3] - LOGITS[1, 1, 5]])
    torch.testing.assert_close(mt.metrics.logit_diff(LOGITS[:, :5], prompts), expected)


def test_corrupted_twins_get_the_same_continuation():
    prompts = mt.Prompts([[1, 2, 3], [4, 5]], corrupted=[[7, 2, 3], [9, 5]], continuations=[[6, 2], [3]])
    assert prompts.corrupted.tokens.tolist() == [[7, 2, 3, 6, 2], [9, 5, 3, 0, 0]]
    again = mt.Prompts([[1, 2, 3], [4, 5]], corrupted=mt.Prompts([[7, 2, 3], [9, 5]]), continuations=[[6, 2], [3]])
    assert torch.equal(again.corrupted.tokens, prompts.corrupted.tokens)
    assert prompts[[1]].continuation_lengths.tolist() == [1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"continuations": [[1], [2]], "answers": [1, 2]}, "do not pass answers"),
        ({"wrong_continuations": [[1], [2]]}, "needs continuations"),
        ({"continuations": [[1, 2], [2]], "wrong_continuations": [[1], [2, 3]]}, "agree on every token"),
        ({"continuations": [[1]]}, "1 entries for 2 prompts"),
        ({"continuations": [[1], []]}, "no tokens"),
    ],
)
def test_bad_continuations_are_clear_errors(kwargs, message):
    with pytest.raises(mt.PromptsError, match=message):
        mt.Prompts([[1, 2, 3], [4, 5]], **kwargs)


def test_a_metric_without_continuations_says_how_to_add_them():
    with pytest.raises(mt.MetricError, match="continuations="):
        mt.metrics.continuation_logprob()(LOGITS, mt.Prompts([[1, 2, 3, 4, 5], [1, 2]]))


PROMPTS = [[5, 6, 7, 8], [9, 10], [11, 12, 13], [14]]
CONTINUATIONS = [[20, 21, 22], [23], [24, 25], [26, 27, 28, 29]]


def _by_hand(hf) -> np.ndarray:
    """Each prompt + continuation run alone, unpadded: the summed log-probs of the continuation tokens."""
    values = []
    for prompt, continuation in zip(PROMPTS, CONTINUATIONS, strict=True):
        ids = torch.tensor([prompt + continuation])
        with torch.no_grad():
            lp = hf(ids).logits[0].log_softmax(-1)
        start = len(prompt)
        values.append(sum(float(lp[start - 1 + j, t]) for j, t in enumerate(continuation)))
    return np.array(values)


def _encoded(side: str) -> dict[str, torch.Tensor]:
    width = max(map(len, PROMPTS))
    ids, mask = [], []
    for row in PROMPTS:
        pad = [0] * (width - len(row))
        ids.append(pad + row if side == "left" else row + pad)
        mask.append([0] * len(pad) + [1] * len(row) if side == "left" else [1] * len(row) + [0] * len(pad))
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_measured_continuation_logprob_matches_the_model_at_any_batch_size_and_padding(side, batch_size):
    hf = random_gpt2(n_layer=2)
    prompts = mt.Prompts(_encoded(side), continuations=CONTINUATIONS)
    iv = mt.ablate(mt.heads("0.1"), method="zero")
    effect = mt.measure(mt.Model.from_hf(hf), prompts, iv, mt.metrics.continuation_logprob(), batch_size=batch_size)
    np.testing.assert_allclose(effect.clean, _by_hand(hf), rtol=1e-5, atol=1e-5)
