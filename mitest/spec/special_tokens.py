"""Special tokens in what ``mt.Prompts`` is given: a BatchEncoding's mask, unmasked padding, a doubled BOS.

A padded ``[n, seq]`` id tensor without its attention mask would make every metric read padding as
prompt text, so ids that end (or start) with the tokenizer's pad id are refused unless the mask says
which tokens are real. Text that already starts with the BOS token gets a second one from most
tokenizers; that is warned about.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mitest.errors import DoubleBosWarning, PromptsError


def unwrap_encoding(tokens: Any, attention_mask: Any) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)`` from a BatchEncoding or dict of them; other tokens pass through."""
    if not isinstance(tokens, Mapping):
        return tokens, attention_mask
    if "input_ids" not in tokens:
        raise PromptsError(
            f"a mapping given as tokens needs 'input_ids' (a tokenizer's BatchEncoding); it has {list(tokens)}"
        )
    if attention_mask is not None and "attention_mask" in tokens:
        raise PromptsError("tokens already carry an attention_mask; do not pass attention_mask= as well")
    return tokens["input_ids"], tokens.get("attention_mask", attention_mask)


def refuse_padding(ids: torch.Tensor, lengths: torch.Tensor, tokenizer: Any) -> None:
    """Raise when rows of ``ids`` start or end with the tokenizer's pad id (padding given without its mask).

    When the pad id is also the BOS or EOS id (GPT-2 style), a run of it at one end is padding only
    where the rows' runs differ in length: the same single BOS on every row is a real token.
    """
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        return
    real = torch.arange(ids.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
    padded = ids == pad
    leading = (padded & real).long().cumprod(1).sum(1)
    trailing = (padded | ~real).flip(1).long().cumprod(1).sum(1) - (ids.shape[1] - lengths)
    shared = pad in (getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "eos_token_id", None))
    for end, run in (("starts", leading), ("ends", trailing)):
        extra = run - run.min() if shared else run
        if bool((extra > 0).any()):
            i = int((extra > 0).nonzero()[0])
            raise PromptsError(
                f"tokens row {i} {end} with {int(run[i])} pad token(s) (id {pad}), which would be read as prompt "
                "text; pass attention_mask= (e.g. mt.Prompts(ids, attention_mask=mask)) or the tokenizer's "
                "BatchEncoding itself (mt.Prompts(tokenizer(texts, padding=True)))"
            )


def warn_double_bos(ids: Sequence[int], text: str, tokenizer: Any, label: str) -> None:
    """Warn when ``text`` starts with the BOS token and tokenizing it added another."""
    bos, bos_id = getattr(tokenizer, "bos_token", None), getattr(tokenizer, "bos_token_id", None)
    if bos and bos_id is not None and text.lstrip().startswith(bos) and list(ids[:2]) == [bos_id, bos_id]:
        warnings.warn(
            f"{label} already starts with the BOS token {bos!r} and the tokenizer added another, so the prompt starts "
            f"with two; drop it from the text, or tokenize it yourself with add_special_tokens=False",
            DoubleBosWarning,
            stacklevel=5,  # the caller of mt.Prompts(...)
        )
