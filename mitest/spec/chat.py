"""Chat prompts: conversations rendered with the tokenizer's chat template, answers in the assistant turn.

The template's text already holds the special tokens it needs (BOS, turn markers), so it is
tokenized without adding any: a chat prompt never starts with two BOS tokens. A conversation that
ends with the assistant's turn is split there: the prompt is the conversation up to the assistant
header (the template's generation prompt), and the assistant's text is the continuation the model is
teacher-forced on, so the answer position is the last header token, predicting the reply's first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mitest.errors import PromptsError

Conversation = Sequence[Mapping[str, str]]


def render(
    conversations: Sequence[Conversation], tokenizer: Any, *, replies: bool = True
) -> tuple[list[list[int]], list[list[int]] | None]:
    """Token ids of each conversation's prompt, and of its assistant reply (None when none ends with one).

    With ``replies=False`` (corrupted twins) a closing assistant turn is dropped, and no replies are returned.
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise PromptsError(
            "this tokenizer has no chat template (tokenizer.chat_template is None): set one, or build mt.Prompts "
            "from text or token ids instead"
        )
    if isinstance(conversations, (str, Mapping)) or not isinstance(conversations, Sequence) or not conversations:
        raise PromptsError("from_chat needs a list of conversations, each a list of {'role': ..., 'content': ...}")
    ends = [_ends_with_reply(conversation, i) for i, conversation in enumerate(conversations)]
    if not replies:
        kept = [list(c[:-1] if end else c) for c, end in zip(conversations, ends, strict=True)]
        return [_ids(tokenizer, messages, True) for messages in kept], None
    if any(ends) and not all(ends):
        first = ends.index(not ends[0])
        raise PromptsError(
            f"conversation 0 {'ends' if ends[0] else 'does not end'} with an assistant turn but conversation "
            f"{first} {'does' if ends[first] else 'does not'}; end all of them with the reply, or none"
        )
    if not all(ends):
        return [_ids(tokenizer, list(conversation), True) for conversation in conversations], None
    split = [_split(tokenizer, list(conversation), i) for i, conversation in enumerate(conversations)]
    return [prompt for prompt, _ in split], [reply for _, reply in split]


def _ends_with_reply(conversation: Any, i: int) -> bool:
    if isinstance(conversation, (str, Mapping)) or not isinstance(conversation, Sequence) or not conversation:
        raise PromptsError(f"conversation {i} must be a non-empty list of {{'role': ..., 'content': ...}} messages")
    for message in conversation:
        if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
            raise PromptsError(f"conversation {i} has a message without 'role' and 'content': {message!r:.60}")
    return conversation[-1]["role"] == "assistant"


def _ids(tokenizer: Any, messages: list[Mapping[str, str]], generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _split(tokenizer: Any, messages: list[Mapping[str, str]], i: int) -> tuple[list[int], list[int]]:
    """The prompt up to the assistant header, and the reply's tokens (without the turn's closing tokens)."""
    prompt = _ids(tokenizer, messages[:-1], True)
    full = _ids(tokenizer, messages, False)
    empty = _ids(tokenizer, [*messages[:-1], {**messages[-1], "content": ""}], False)
    closing = len(empty) - len(prompt)  # the tokens the template puts after the reply
    tail = full[len(full) - closing :] if closing > 0 else []
    if closing < 0 or full[: len(prompt)] != prompt or empty[: len(prompt)] != prompt or tail != empty[len(prompt) :]:
        raise PromptsError(
            f"conversation {i}: the chat template does not render the assistant's reply as the generation prompt "
            "followed by its text, so the reply cannot be located; end the conversation with the user's turn and "
            "pass answers= instead"
        )
    reply = full[len(prompt) : len(full) - closing]
    if not reply:
        raise PromptsError(f"conversation {i}: the assistant's reply has no tokens")
    return prompt, reply
