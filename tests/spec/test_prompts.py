"""mt.Prompts construction and its errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import mitest as mt
from tests.builders import word_tokenizer

TOKENIZER = word_tokenizer(["when", "Mary", "and", "John", "went", "to", "the", "store", "gave", "a", "bag", "Anna"])


def test_tensor_tokens_are_all_real():
    prompts = mt.Prompts(torch.arange(12).reshape(3, 4), answers=[1, 2, 3])
    assert prompts.lengths.tolist() == [4, 4, 4]
    assert prompts.answer_positions.tolist() == [3, 3, 3]
    assert prompts.attention_mask.all()


def test_variable_length_lists_are_right_padded_with_lengths():
    prompts = mt.Prompts([[5, 6], [7, 8, 9]])
    assert prompts.tokens.tolist() == [[5, 6, 0], [7, 8, 9]]
    assert prompts.attention_mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert prompts.answer_positions.tolist() == [1, 2]


def test_text_and_answers_are_tokenized():
    prompts = mt.Prompts(
        ["when Mary and John went", "John gave"], answers=["Mary", "a"], wrong=["John", "bag"], tokenizer=TOKENIZER
    )
    assert prompts.lengths.tolist() == [5, 2]
    assert prompts.answers.tolist() == [TOKENIZER.convert_tokens_to_ids("Mary"), TOKENIZER.convert_tokens_to_ids("a")]


def test_from_frame_reads_named_columns():
    frame = pd.DataFrame(
        {
            "text": ["when Mary and John went to", "when John and Mary went to"],
            "io": ["Mary", "John"],
            "s": ["John", "Mary"],
            "cf": ["when Anna and John went to", "when Anna and Mary went to"],
            "template": [0, 1],
        }
    )
    prompts = mt.Prompts.from_frame(
        frame, tokenizer=TOKENIZER, text="text", answer="io", wrong="s", corrupted="cf", group="template"
    )
    assert len(prompts) == 2 and prompts.corrupted is not None
    assert prompts.groups.tolist() == [0, 1]
    with pytest.raises(mt.PromptsError, match=r"no column\(s\) \['answer'\]"):
        mt.Prompts.from_frame(frame, tokenizer=TOKENIZER, text="text", answer="answer")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tokens": []}, "empty"),
        ({"tokens": torch.zeros(0, 4, dtype=torch.long)}, "empty"),
        ({"tokens": torch.arange(4)}, "1-D"),
        ({"tokens": torch.zeros(2, 2, 2, dtype=torch.long)}, "2-D"),
        ({"tokens": [[1, 2], []]}, r"tokens\[1\] has no tokens"),
        ({"tokens": [[1.5, 2.0]]}, "integers"),
        ({"tokens": [[1, -2]]}, "negative"),
        ({"tokens": "one prompt"}, "single string"),
        ({"tokens": ["text"]}, "tokenizer="),
        ({"tokens": [[1, 2]], "answers": [1, 2]}, "2 entries for 1 prompts"),
        ({"tokens": [[1, 2]], "answers": [1.5]}, "token id"),
        ({"tokens": [[1, 2]], "groups": ["a", "b"]}, "2 labels for 1 prompts"),
        ({"tokens": [[1, 2], [3, 4]], "corrupted": [[1, 2]]}, "corrupted has 1 prompts"),
        ({"tokens": [[1, 2], [3, 4]], "corrupted": [[1, 2], [3, 4, 5]]}, "token-aligned"),
        ({"tokens": [[1, 2]], "answer_positions": [5]}, "outside prompt 0"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, message):
    tokens = kwargs.pop("tokens")
    with pytest.raises(mt.PromptsError, match=message):
        mt.Prompts(tokens, **kwargs)


def test_multi_token_answers_are_rejected():
    with pytest.raises(mt.PromptsError, match="2 tokens"):
        mt.Prompts(["Mary went"], answers=["Mary John"], tokenizer=TOKENIZER)


def test_subsets_keep_answers_corrupted_and_groups_aligned():
    prompts = mt.Prompts(
        [[1, 2, 3], [4, 5], [6, 7, 8]],
        answers=[10, 11, 12],
        corrupted=[[9, 9, 9], [8, 8], [7, 7, 7]],
        groups=["x", "y", "z"],
    )
    subset = prompts[[2, 1]]
    assert subset.tokens.tolist() == [[6, 7, 8], [4, 5, 0]]
    assert subset.answers.tolist() == [12, 11]
    assert subset.corrupted.tokens.tolist() == [[7, 7, 7], [8, 8, 0]]
    assert subset.groups.tolist() == ["z", "y"]
    assert subset.index.tolist() == [0, 1]
    with pytest.raises(mt.PromptsError, match="empty"):
        prompts[[]]


def test_fingerprint_depends_on_content_only():
    a = mt.Prompts([[1, 2, 3]], answers=[4])
    assert a.fingerprint == mt.Prompts(np.array([[1, 2, 3]]), answers=[4]).fingerprint
    assert a.fingerprint != mt.Prompts([[1, 2, 3]], answers=[5]).fingerprint
    assert a.fingerprint != mt.Prompts([[1, 2, 4]], answers=[4]).fingerprint


def test_prompts_refuse_reassignment_of_their_fields():
    prompts = mt.Prompts([[1, 2, 3], [4, 5, 6]], answers=[1, 2], corrupted=[[7, 8, 9], [7, 8, 0]])
    for target, field in (
        (prompts, "answers"),
        (prompts, "ids"),
        (prompts.corrupted, "index"),
        (prompts[0:1], "groups"),
    ):
        with pytest.raises(mt.PromptsError, match="immutable"):
            setattr(target, field, None)


def test_a_prompt_set_edited_in_place_is_refused_when_next_identified():
    prompts = mt.Prompts([[1, 2, 3], [4, 5, 6]], answers=[1, 2], corrupted=[[7, 8, 9], [7, 8, 0]])
    first = prompts.fingerprint
    assert prompts.fingerprint == first  # computed once, then kept
    prompts.corrupted.tokens[0, 0] = 2  # a write into the twin's tensor
    with pytest.raises(mt.PromptsError, match="edited in place"):
        _ = prompts.fingerprint


def test_group_labels_of_a_prompt_set_are_read_only():
    prompts = mt.Prompts([[1, 2], [3, 4]], groups=["a", "b"])
    with pytest.raises(ValueError, match="read-only"):
        prompts.groups[0] = "b"
