"""Padded token tensors and tokenizer outputs given to mt.Prompts (issue 18)."""

from __future__ import annotations

import pytest
import torch

import mitest as mt
from tests.builders import word_tokenizer

TOKENIZER = word_tokenizer(["when", "Mary", "and", "John", "went", "to", "the", "store"])
TEXTS = ["when Mary and John went", "John went"]


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_padded_tensor_without_its_mask_is_an_error(side):
    TOKENIZER.padding_side = side
    encoded = TOKENIZER(TEXTS, padding=True, return_tensors="pt")
    with pytest.raises(mt.PromptsError, match="attention_mask="):
        mt.Prompts(encoded["input_ids"], tokenizer=TOKENIZER)


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_batch_encoding_is_read_with_its_mask(side):
    TOKENIZER.padding_side = side
    encoded = TOKENIZER(TEXTS, padding=True, return_tensors="pt")
    prompts = mt.Prompts(encoded, answers=[1, 1], tokenizer=TOKENIZER)
    expected = mt.Prompts(TEXTS, answers=[1, 1], tokenizer=TOKENIZER)
    assert prompts.lengths.tolist() == [5, 2]
    assert torch.equal(prompts.tokens, expected.tokens)
    assert prompts.fingerprint == expected.fingerprint


def test_a_dict_of_input_ids_and_attention_mask_is_accepted():
    TOKENIZER.padding_side = "left"
    encoded = dict(TOKENIZER(TEXTS, padding=True))
    assert mt.Prompts(encoded).lengths.tolist() == [5, 2]


def test_a_mapping_and_attention_mask_together_are_refused():
    encoded = TOKENIZER(TEXTS, padding=True, return_tensors="pt")
    with pytest.raises(mt.PromptsError, match="attention_mask"):
        mt.Prompts(encoded, attention_mask=encoded["attention_mask"])


def test_a_mapping_without_input_ids_is_refused():
    with pytest.raises(mt.PromptsError, match="input_ids"):
        mt.Prompts({"ids": [[1, 2]]})


def test_unpadded_tensors_with_a_tokenizer_are_accepted():
    ids = TOKENIZER(["when Mary went", "John went to"], return_tensors="pt")["input_ids"]
    assert mt.Prompts(ids, tokenizer=TOKENIZER).lengths.tolist() == [3, 3]


def test_a_pad_shared_with_bos_is_padding_only_where_rows_differ():
    """GPT-2 style: pad is the BOS id; one leading BOS on every row is not padding, extra ones are."""
    bos = word_tokenizer(["when", "Mary", "went"])
    bos.bos_token = "<pad>"
    assert mt.Prompts(torch.tensor([[0, 2, 3], [0, 3, 4]]), tokenizer=bos).lengths.tolist() == [3, 3]
    with pytest.raises(mt.PromptsError, match="attention_mask="):
        mt.Prompts(torch.tensor([[0, 2, 3, 4], [0, 0, 3, 4]]), tokenizer=bos)
