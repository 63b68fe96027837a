"""mt.attention: attention mass per prompt against the model's own attention weights, and its claims."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mitest as mt
from tests.builders import build


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def gpt2(request):
    """A tiny random GPT-2, and a Llama with grouped-query attention (4 query heads, 2 key/value heads)."""
    return mt.Model.from_hf(build(request.param))


@pytest.fixture(scope="module")
def ragged():
    """Prompts of different lengths (right-padded), with repeated tokens."""
    rows = [[5, 6, 7, 5, 6, 7, 9], [3, 4, 3, 4], [8, 9, 10, 11, 8, 9], [1, 2, 1]]
    return mt.Prompts(rows)


def _reference(model, prompts, layer, head, targets):
    """Mass by hand: each prompt alone (no padding), from transformers' own attention weights."""
    values = []
    for i in range(len(prompts)):
        ids = prompts.tokens[i, : int(prompts.lengths[i])][None]
        implementation = model.hf_model.config._attn_implementation
        with torch.no_grad():
            model.hf_model.config._attn_implementation = "eager"
            pattern = model.hf_model(ids, output_attentions=True).attentions[layer][0, head]
            model.hf_model.config._attn_implementation = implementation
        tokens = ids[0].tolist()
        masses = [float(pattern[q, keys].sum()) for q in range(len(tokens)) if (keys := targets(tokens, q))]
        values.append(np.mean(masses))
    return np.array(values)


@pytest.mark.parametrize(
    ("to", "targets"),
    [
        ("previous", lambda t, q: [q - 1] if q >= 1 else []),
        ("self", lambda t, q: [q]),
        ("first", lambda t, q: [0]),
        (mt.relative(-2), lambda t, q: [q - 2] if q >= 2 else []),
        ("duplicate", lambda t, q: [k for k in range(q) if t[k] == t[q]]),
        ("induction", lambda t, q: [k for k in range(1, q) if t[k - 1] == t[q]]),
    ],
    ids=["previous", "self", "first", "relative", "duplicate", "induction"],
)
def test_mass_equals_transformers_attention_on_each_unpadded_prompt(gpt2, ragged, to, targets):
    attention = mt.attention(gpt2, ragged, "1.2")
    assert np.allclose(attention.mass(to=to), _reference(gpt2, ragged, 1, 2, targets), atol=1e-6)


def test_queries_and_key_positions_select_what_they_say(gpt2, ragged):
    attention = mt.attention(gpt2, ragged, "0.1")
    last_to_first = attention.mass(to=0, from_="last")
    assert np.allclose(last_to_first, attention.pattern[torch.arange(4), ragged.lengths - 1, 0].numpy(), atol=1e-7)
    assert np.allclose(attention.mass(to="all"), 1.0, atol=1e-5)  # every real query's weights sum to 1


def test_the_users_model_is_left_as_it_was(gpt2, ragged):
    before = gpt2.hf_model.config._attn_implementation
    mt.attention(gpt2, ragged, "0.0")
    assert gpt2.hf_model.config._attn_implementation == before


def test_padding_never_counts(gpt2, ragged):
    """The same prompt gives the same mass alone and padded in a batch with longer prompts."""
    alone = mt.attention(gpt2, ragged[[3]], "1.0").mass(to="previous")
    together = mt.attention(gpt2, ragged, "1.0").mass(to="previous")
    assert together[3] == pytest.approx(alone[0], abs=1e-6)


def test_a_prompt_without_a_query_that_sees_a_target_is_refused(gpt2):
    with pytest.raises(mt.PositionsError, match="no query"):
        mt.attention(gpt2, mt.Prompts([[1, 2, 3], [4, 5, 6]]), "0.0").mass(to="duplicate")


def test_bad_heads_and_targets_are_refused(gpt2, ragged):
    with pytest.raises(mt.SiteError, match="4 heads"):
        mt.attention(gpt2, ragged, "0.7")
    with pytest.raises(mt.SiteError, match="head -1 does not exist"):  # found by review: read as head 3
        mt.attention(gpt2, ragged, (0, -1))
    with pytest.raises(mt.SiteError, match="one head"):
        mt.attention(gpt2, ragged, "0.*")
    with pytest.raises(mt.PositionsError, match="relative"):
        mt.attention(gpt2, ragged, "0.0").mass(to="previus")
    with pytest.raises(mt.PositionsError, match="<= 0"):
        mt.relative(1)


def test_previous_token_claims_on_the_zoo_model():
    model, prompts = mt.zoo.load("induction")
    attention = mt.attention(model, prompts["repeated"], "0.0")
    verdict = attention.expect_attends(from_="all", to="previous", at_least=0.75)
    assert verdict.outcome == mt.HOLDS and verdict.estimate == pytest.approx(0.807, abs=0.001)
    assert verdict.n == 64 and verdict.metric == "attention 0.0 from all to previous"
    with pytest.raises(mt.ClaimRefuted):
        attention.expect_attends(to="previous", at_least=0.9)
    with pytest.raises(mt.ClaimRefuted):
        mt.attention(model, prompts["repeated"], "1.0").expect_attends(to="previous", at_least=0.1)


def test_a_claim_records_a_reading_with_its_identity():
    model, prompts = mt.zoo.load("induction")
    effect = mt.attention(model, prompts["repeated"], "1.2").reading(to="induction", from_="second_half")
    assert np.array_equal(effect.clean, effect.intervened)  # a reading: nothing was intervened on
    assert effect.identity["prompts"] == prompts["repeated"].fingerprint
    other = mt.attention(model, prompts["repeated"], "1.2").reading(to="induction")
    assert other.identity["reading"] != effect.identity["reading"]  # the query positions are part of it
