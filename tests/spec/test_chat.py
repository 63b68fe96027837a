"""mt.Prompts.from_chat and the doubled-BOS warning, on a tiny word-level tokenizer with a chat template."""

from __future__ import annotations

import warnings

import pytest
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, processors

import mitest as mt
from tests.builders import word_tokenizer

TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
WORDS = ["<s>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>", "capital", "of", "France", "Italy", "is", "Paris"]
WORDS += ["Rome", "the", "city", "answer"]


def chat_tokenizer(template: str | None = TEMPLATE) -> transformers.PreTrainedTokenizerFast:
    """Word-level, adds ``<s>`` in front of every text (like Llama), with ``template`` as its chat template."""
    vocab = {word: i for i, word in enumerate(["<pad>", "<unk>", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", bos_token="<s>"
    )
    tokenizer.chat_template = template
    return tokenizer


TOKENIZER = chat_tokenizer()
ID = TOKENIZER.convert_tokens_to_ids


def _ask(country: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"the capital of {country} is"}]


def test_the_reply_is_the_continuation_and_its_first_token_the_answer():
    conversations = [
        [*_ask("France"), {"role": "assistant", "content": "Paris"}],
        [{"role": "system", "content": "answer"}, *_ask("Italy"), {"role": "assistant", "content": "the city Rome"}],
    ]
    prompts = mt.Prompts.from_chat(conversations, TOKENIZER)
    first = prompts.tokens[0, : int(prompts.lengths[0])].tolist()
    assert TOKENIZER.convert_ids_to_tokens(first) == [
        "<s>", "<|user|>", "the", "capital", "of", "France", "is", "<|end|>", "<|assistant|>", "Paris",
    ]  # fmt: skip
    assert first.count(ID("<s>")) == 1
    assert prompts.continuation_lengths.tolist() == [1, 3]
    assert prompts.answers.tolist() == [ID("Paris"), ID("the")]
    positions = prompts.answer_positions.tolist()
    assert [int(prompts.tokens[i, p]) for i, p in enumerate(positions)] == [ID("<|assistant|>")] * 2


def test_conversations_ending_with_the_user_get_the_generation_prompt():
    prompts = mt.Prompts.from_chat([_ask("France"), _ask("Italy")], TOKENIZER, answers=["Paris", "Rome"])
    assert prompts.continuation_lengths is None
    assert prompts.tokens[0, int(prompts.answer_positions[0])] == ID("<|assistant|>")
    assert prompts.answers.tolist() == [ID("Paris"), ID("Rome")]


def test_corrupted_conversations_get_the_clean_reply():
    clean = [[*_ask("France"), {"role": "assistant", "content": "Paris"}]] * 2
    corrupted = [_ask("Italy"), [*_ask("Italy"), {"role": "assistant", "content": "Rome"}]]
    prompts = mt.Prompts.from_chat(clean, TOKENIZER, corrupted=corrupted)
    twin = prompts.corrupted.tokens
    assert twin[0].tolist() == twin[1].tolist()
    assert twin[0, -1] == ID("Paris") and twin[0, 5] == ID("Italy")


def test_a_tokenizer_without_a_chat_template_is_a_clear_error():
    with pytest.raises(mt.PromptsError, match="no chat template"):
        mt.Prompts.from_chat([_ask("France")], chat_tokenizer(None))


@pytest.mark.parametrize(
    ("conversations", "message"),
    [
        ([_ask("France"), [*_ask("Italy"), {"role": "assistant", "content": "Rome"}]], "end all of them"),
        ([[{"role": "user"}]], "without 'role' and 'content'"),
        ("the capital", "list of conversations"),
        ([[]], "non-empty list"),
    ],
)
def test_bad_conversations_are_clear_errors(conversations, message):
    with pytest.raises(mt.PromptsError, match=message):
        mt.Prompts.from_chat(conversations, TOKENIZER)


def test_a_template_that_rewrites_the_reply_is_refused():
    rewriting = chat_tokenizer(
        "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}<|assistant|> <|end|> {% endif %}"
    )
    with pytest.raises(mt.PromptsError, match="cannot be located"):
        mt.Prompts.from_chat([[*_ask("France"), {"role": "assistant", "content": "Paris"}]], rewriting)


def test_text_that_already_starts_with_bos_warns_when_the_tokenizer_adds_another():
    with pytest.warns(mt.DoubleBosWarning, match="two"):
        prompts = mt.Prompts(["<s> the capital of France is"], tokenizer=TOKENIZER)
    assert prompts.tokens[0, :2].tolist() == [ID("<s>")] * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mt.Prompts(["the capital of France is"], tokenizer=TOKENIZER)
        mt.Prompts(["<s> France"], tokenizer=word_tokenizer(["<s>", "France"]))  # no BOS added: nothing to warn of
