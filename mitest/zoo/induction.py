"""The induction task: a 2-layer attention-only GPT-2 trained on repeated random-token segments.

Training sequences are random tokens in which one segment ``r`` (4 to 12 tokens) occurs twice, at
random places; its second copy is predictable only by induction (find the earlier occurrence of
the current token, predict the token that followed it). Random placement removes positional
shortcuts. Layer 0 has a single working head (the output weights of its other three heads are zero
and frozen, like every MLP): with four free layer-0 heads the model learned a variant that keys on
the token two back instead of the textbook previous-token head. The zoo's ``induction`` model is the
final checkpoint, ``induction-early`` one taken before the induction heads formed.

Retrain (seeded; about 2 minutes on one CPU core)::

    python -m mitest.zoo.training.induction      # writes mitest/zoo/weights/induction{,-early}/
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mitest.errors import MitestError
from mitest.families.strategies import Example, Family, numbers, tokens
from mitest.features import heads as features
from mitest.model.model import Model
from mitest.spec.prompts import Prompts

VOCAB = 65  # 64 content tokens and BOS
BOS = 64
CONTEXT = 33
HEAD_DIM = 16
SEGMENT = 16  # segment length of the evaluation prompts [BOS] + r + r
TRAIN_SEGMENTS = (4, 12)  # segment lengths seen in training (inclusive)
WEIGHTS = Path(__file__).parent / "weights"


# -- prompts ---------------------------------------------------------------------------------------


def repeated(n: int = 64, *, seed: int = 0) -> Prompts:
    """``[BOS] + r + r`` with ``r`` 16 distinct random tokens; the corrupted twin's second half is
    16 other tokens.

    Score it with ``mt.metrics.loss("second_half")``: the loss on the repeat, which only induction
    can lower (on the corrupted twin the repeat is absent, so the loss stays near ``log 64``).
    Distinct tokens make every induction target unambiguous.
    """
    generator = torch.Generator().manual_seed(seed)
    clean, corrupted = [], []
    for _ in range(n):
        r = _distinct(SEGMENT, generator)
        fresh = _distinct(SEGMENT, generator, avoid=r)
        clean.append([BOS, *r, *r])
        corrupted.append([BOS, *r, *fresh])
    return Prompts(clean, corrupted=corrupted)


def next_token(n: int = 64, *, seed: int = 1) -> Prompts:
    """``[BOS] + r + r[:k]`` (``k`` from 4 to 15): the answer is ``r[k]``, the token induction predicts.

    The wrong token is ``r[k - 1]``, the current token (copying it is the natural mistake). The
    corrupted twin replaces the first copy with fresh tokens, so nothing points to the answer:
    patching from the clean run into it measures how much of the prediction a site carries.
    Prompts have different lengths (right-padded).
    """
    generator = torch.Generator().manual_seed(seed)
    clean, corrupted, answers, wrong = [], [], [], []
    for _ in range(n):
        r = _distinct(SEGMENT, generator)
        k = int(torch.randint(4, SEGMENT, (1,), generator=generator))
        fresh = _distinct(SEGMENT, generator, avoid=r)
        clean.append([BOS, *r, *r[:k]])
        corrupted.append([BOS, *fresh, *r[:k]])
        answers.append(r[k])
        wrong.append(r[k - 1])
    return Prompts(clean, answers=answers, wrong=wrong, corrupted=corrupted)


def prompt_sets(model: Model | None = None) -> dict[str, Prompts]:
    """The task's prompt sets: ``repeated`` (loss on the repeat) and ``next_token`` (answer at the end)."""
    return {"repeated": repeated(), "next_token": next_token()}


def head_scores(model: Model, prompts: Prompts | None = None) -> dict[str, dict[str, float]]:
    """Per head ``"layer.head"``: its mean attention to the previous token (``previous_token``) and,
    on the repeat, to the token after the current token's occurrence in the first copy (``induction``).

    Read from the attention patterns on :func:`repeated` prompts (or ``prompts`` of that form) by
    :func:`mitest.features.heads.head_scores`, rounded to 3 decimals. A previous-token head scores
    near 1 on the first, an induction head on the second.
    """
    prompts = prompts or repeated()
    tables = {kind: features.head_scores(model, prompts, kind).table for kind in ("previous_token", "induction")}
    shape = tables["induction"]
    return {
        f"{layer}.{head}": {kind: round(float(table.loc[layer, head]), 3) for kind, table in tables.items()}
        for layer in shape.index
        for head in shape.columns
    }


def _distinct(k: int, generator: torch.Generator, avoid: list[int] | None = None) -> list[int]:
    """``k`` distinct random content tokens, none in ``avoid``: each token's successor is unambiguous."""
    pool = torch.tensor([t for t in range(BOS) if t not in set(avoid or ())])
    return pool[torch.randperm(len(pool), generator=generator)[:k]].tolist()


# -- the prompt family ------------------------------------------------------------------------------


def family(segment: int = 16, *, shortest: int = 4) -> Family:
    """The zoo induction task's next-token prompts ``[BOS] + r + r[:k]``, answered by ``r[k]``.

    Slots: ``segment`` (``r``, distinct tokens), ``k`` (``shortest`` to ``segment - 1``) and
    ``fresh`` (tokens not in ``r``). The wrong answer is ``r[k - 1]``; the corrupted twin replaces the
    first copy with ``fresh``, so nothing points to the answer.
    """
    if not 1 <= shortest < segment <= BOS // 2:
        raise MitestError(f"induction(segment, shortest) needs 1 <= shortest < segment <= {BOS // 2}")

    def build(filled: Mapping[str, Any]) -> Example:
        r, k = list(filled["segment"]), filled["k"]
        return Example([BOS, *r, *r[:k]], r[k], r[k - 1], [BOS, *filled["fresh"], *r[:k]])

    slots = {
        "segment": tokens(0, BOS - 1, segment),
        "k": numbers(shortest, segment - 1),
        "fresh": tokens(0, BOS - 1, segment),
    }
    return Family("induction next token", slots, build, apart=[("segment", "fresh")])
