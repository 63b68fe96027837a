"""Causal scrubbing validated on the planted induction model, where the true circuit is known exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mitest as mt
from mitest.spec.base import identity
from mitest.zoo import planted

LOSS = mt.metrics.loss(positions="second_half")
TOKENS = {"tokens": "hook_embed"}
CIRCUIT_NODES = {**TOKENS, "prev": mt.heads(planted.PREVIOUS_TOKEN_HEAD), "ind": mt.heads(planted.INDUCTION_HEAD)}
CIRCUIT_EDGES = [
    ("tokens", "prev"),
    ("prev", "ind.k"),
    ("tokens", "ind.k"),
    ("tokens", "ind.q"),
    ("tokens", "ind.v"),
    ("ind", "output"),
    ("tokens", "output"),
]


@pytest.fixture(scope="module")
def induction():
    return planted.induction(n=48)


def recovery(effect: mt.Effect) -> float:
    return float((effect.intervened - effect.corrupted).sum() / (effect.clean - effect.corrupted).sum())


def scrub(induction, hypothesis, metric=LOSS, **kwargs) -> mt.Effect:
    model, prompts = induction
    return mt.measure(model, prompts, mt.scrub(hypothesis, **kwargs), metric)


def test_the_planted_circuit_explains_all_of_the_behaviour(induction):
    effect = scrub(induction, mt.Hypothesis(CIRCUIT_NODES, CIRCUIT_EDGES))
    # Every path the hypothesis leaves out carries nothing: the scrubbed model is the clean one.
    np.testing.assert_allclose(effect.intervened, effect.clean, atol=1e-5)
    assert effect.corrupted.mean() > effect.clean.mean() + 2.0  # the resampled model has lost induction
    verdict = effect.expect_recovery(at_least=0.95, alpha=0.01)
    assert verdict.holds and verdict.estimate == pytest.approx(1.0, abs=1e-5)


def test_a_hypothesis_missing_the_previous_token_head_is_refuted(induction):
    nodes = {**TOKENS, "ind": mt.heads(planted.INDUCTION_HEAD)}
    edges = [("tokens", "ind"), ("ind", "output"), ("tokens", "output")]
    effect = scrub(induction, mt.Hypothesis(nodes, edges))
    assert recovery(effect) < 0.5
    with pytest.raises(mt.ClaimRefuted, match="recovers at least 0.95"):
        effect.expect_recovery(at_least=0.95, alpha=0.01)


def test_a_hypothesis_routing_the_previous_token_head_to_the_queries_is_refuted(induction):
    """K-composition: the previous-token head matters at the keys, and the claim puts it at the queries."""
    edges = [e for e in CIRCUIT_EDGES if e != ("prev", "ind.k")] + [("prev", "ind.q")]
    with pytest.raises(mt.ClaimRefuted):
        scrub(induction, mt.Hypothesis(CIRCUIT_NODES, edges)).expect_recovery(at_least=0.95, alpha=0.01)


def test_a_wrong_feature_is_refuted_and_the_right_one_holds(induction):
    """At the last token the induction head outputs the prompt's answer (the token after the first copy
    of the last token). Prompts that agree on the answer are interchangeable for it; prompts that agree
    only on the second content token are not."""
    model, prompts = induction
    metric = mt.metrics.logit_diff

    def claim(feature):
        hypothesis = mt.Hypothesis(CIRCUIT_NODES, CIRCUIT_EDGES, features={"ind": feature})
        return mt.measure(model, prompts, mt.scrub(hypothesis), metric)

    right = claim(lambda prompt: prompt.answer)
    assert right.expect_recovery(at_least=0.95, alpha=0.01).holds
    np.testing.assert_allclose(right.intervened, right.clean, atol=1e-4)
    wrong = claim(lambda prompt: prompt.tokens[2])
    assert recovery(wrong) < 0.3
    with pytest.raises(mt.ClaimRefuted):
        wrong.expect_recovery(at_least=0.95, alpha=0.01)


@pytest.mark.parametrize("null", planted.INDUCTION_NULL_HEADS)
def test_a_null_head_is_never_needed_by_the_hypothesis(induction, null):
    """Claiming a null head, or leaving it out, gives the same scrubbed model: it is never necessary."""
    layer = int(null.split(".")[0])
    nodes = {**CIRCUIT_NODES, "null": mt.heads(null)}
    into = "ind.k" if layer == 0 else "output"
    with_null = scrub(induction, mt.Hypothesis(nodes, [*CIRCUIT_EDGES, ("tokens", "null"), ("null", into)]))
    without = scrub(induction, mt.Hypothesis(CIRCUIT_NODES, CIRCUIT_EDGES), seed=1)
    np.testing.assert_allclose(with_null.intervened, without.intervened, atol=1e-5)
    # A constant feature resamples the null head's input from any prompt: still nothing changes.
    constant = mt.Hypothesis(
        nodes, [*CIRCUIT_EDGES, ("tokens", "null"), ("null", into)], features={"null": lambda prompt: 0}
    )
    np.testing.assert_allclose(scrub(induction, constant).intervened, without.intervened, atol=1e-5)


def test_scrubbing_is_seeded(induction):
    nodes = {**TOKENS, "ind": mt.heads(planted.INDUCTION_HEAD)}
    hypothesis = mt.Hypothesis(nodes, [("tokens", "ind"), ("ind", "output"), ("tokens", "output")])
    first, again, other = (scrub(induction, hypothesis, seed=seed) for seed in (0, 0, 1))
    np.testing.assert_array_equal(first.intervened, again.intervened)
    np.testing.assert_array_equal(first.corrupted, again.corrupted)
    assert not np.array_equal(first.intervened, other.intervened)


def answer(prompt):
    return prompt.answer


def last_token(prompt):
    return prompt.tokens[-1]


def test_the_effect_records_what_was_scrubbed(induction):
    hypothesis = mt.Hypothesis(CIRCUIT_NODES, CIRCUIT_EDGES, features={"ind": answer})
    effect = scrub(induction, hypothesis)
    assert effect.intervention["type"] == "Scrub"
    assert effect.intervention["hypothesis"]["edges"][1] == ["prev", "ind", "k"]
    assert effect.intervention["hypothesis"]["features"]["ind"].startswith("tests.engine.test_scrub.answer:")
    assert effect.identity["intervention"] == identity(mt.scrub(hypothesis).to_dict()).key  # floats not hashed
    other = mt.Hypothesis(CIRCUIT_NODES, CIRCUIT_EDGES, features={"ind": last_token})
    assert mt.scrub(other).key() != mt.scrub(hypothesis).key()
    assert all(hook["fired"] > 0 for hook in effect.hooks)


def test_the_resampled_base_does_not_depend_on_the_hypothesis(induction):
    """Recoveries of two hypotheses scrubbed with one seed share their denominator's base run."""
    nodes = {**TOKENS, "ind": mt.heads(planted.INDUCTION_HEAD)}
    small = scrub(induction, mt.Hypothesis(nodes, [("tokens", "ind"), ("ind", "output")]))
    full = scrub(induction, mt.Hypothesis(CIRCUIT_NODES, CIRCUIT_EDGES))
    np.testing.assert_array_equal(small.corrupted, full.corrupted)


def test_a_feature_no_other_prompt_shares_is_reported(induction):
    unique = mt.Hypothesis(CIRCUIT_NODES, CIRCUIT_EDGES, features={"ind": lambda prompt: prompt.tokens})
    [note] = scrub(induction, unique).notes
    assert note.startswith("feature of node 'ind': 48 of 48 prompts have no other prompt")
    _, prompts = induction
    answers = prompts.answers.tolist()
    alone = sum(answers.count(a) == 1 for a in answers)
    [note] = scrub(induction, mt.Hypothesis(CIRCUIT_NODES, CIRCUIT_EDGES, features={"ind": answer})).notes
    assert note.startswith(f"feature of node 'ind': {alone} of 48 prompts") and alone > 0
    constant = mt.Hypothesis(CIRCUIT_NODES, CIRCUIT_EDGES, features={"ind": lambda prompt: 0})
    assert scrub(induction, constant).notes == ()


def test_a_residual_stream_node_stands_for_everything_written_before_it(induction):
    """The stream entering layer 1, computed from the tokens and the previous-token head, feeds the
    induction head: exact. Leave the previous-token head out of it and induction is gone."""
    nodes = {**CIRCUIT_NODES, "stream": mt.resid(1, "pre")}
    through = [("tokens", "prev"), ("tokens", "stream"), ("prev", "stream"), ("stream", "ind"), ("ind", "output")]
    effect = scrub(induction, mt.Hypothesis(nodes, through))
    np.testing.assert_allclose(effect.intervened, effect.clean, atol=1e-5)
    without = {**TOKENS, "ind": mt.heads(planted.INDUCTION_HEAD), "stream": mt.resid(1, "pre")}
    missing = [("tokens", "stream"), ("stream", "ind"), ("ind", "output"), ("tokens", "output")]
    with pytest.raises(mt.ClaimRefuted):
        scrub(induction, mt.Hypothesis(without, missing)).expect_recovery(at_least=0.95, alpha=0.01)


def test_a_residual_node_at_some_positions_leaves_the_rest_to_resampling(induction):
    """Claiming the keys' stream on the first copy only leaves the repeat's keys to a random prompt:
    some of them then match the queries, so the claim explains less than the same node everywhere."""

    def keys_stream(positions):
        nodes = {**CIRCUIT_NODES, "keys": mt.resid(1, "pre").at(positions)}
        edges = [("tokens", "prev"), ("tokens", "keys"), ("prev", "keys"), ("keys", "ind.k"), ("tokens", "ind.q")]
        edges += [("tokens", "ind.v"), ("ind", "output"), ("tokens", "output")]
        return scrub(induction, mt.Hypothesis(nodes, edges))

    everywhere, first_copy = keys_stream("all"), keys_stream("first_half")
    np.testing.assert_allclose(everywhere.intervened, everywhere.clean, atol=1e-5)
    assert 0.5 < recovery(first_copy) < 0.995


# -- cancellation ------------------------------------------------------------------------------------


def test_cancellation_is_reported_with_counts():
    from mitest.engine.scrubbing import _cancellation

    clean = np.zeros(40)
    resampled = np.full(40, -1.0)
    hides = np.where(np.arange(40) % 2 == 0, 0.8, -0.8)  # half far above clean, half far below
    [note] = _cancellation(clean, hides, resampled, tolerance=0.5)
    assert "20 of 40 prompts better than the clean model and 20 worse" in note
    assert _cancellation(clean, np.full(40, -0.1), resampled, tolerance=0.5) == ()  # near clean everywhere
    assert _cancellation(clean, np.where(np.arange(40) == 0, 0.8, -0.8), resampled, tolerance=0.5) == ()  # one side


def test_cancellation_reaches_the_verdict():
    """Planted: head 0.0 adds a per-level effect; the claim says only the level's coarse class matters.

    The metric rewards matching each prompt's own target (its clean logit difference shifted by
    +-0.5), so resampling the level within its class lands some prompts nearer the target than the
    clean model and others further: a high mean recovery that hides both.
    """
    model, prompts = planted.planted_effect(0.0, n=64)
    answer, wrong = int(prompts.answers[0]), int(prompts.wrong[0])
    with torch.no_grad():
        last = model.hf_model(prompts.tokens).logits[:, -1]
    target = last[:, answer] - last[:, wrong] + torch.where(prompts.tokens[:, 2] % 2 == 0, 0.5, -0.5)

    def closeness(logits, batch):
        return -((logits[:, -1, answer] - logits[:, -1, wrong] - target[batch.index]) ** 2)

    hypothesis = mt.Hypothesis(
        {**TOKENS, "effect": mt.heads(planted.EFFECT_HEAD)},
        [("tokens", "effect"), ("effect", "output"), ("tokens", "output")],
        features={"effect": lambda prompt: prompt.tokens[1] // 4},
    )
    effect = mt.measure(model, prompts, mt.scrub(hypothesis, tolerance=0.05), closeness)
    assert recovery(effect) > 0.9
    [note] = effect.notes
    above, below = _counts(note)
    gap = np.mean(effect.clean - effect.corrupted)
    deviation = (effect.intervened - effect.clean) / gap
    assert (above, below) == ((deviation > 0.05).sum(), (deviation < -0.05).sum())
    assert above >= 4 and below >= 4
    verdict = effect.expect_recovery(at_least=0.5, alpha=0.01)
    assert verdict.notes == effect.notes and "note: cancellation: scrubbing made" in verdict.summary()


def _counts(note: str) -> tuple[int, int]:
    numbers = [int(word) for word in note.replace(",", " ").split() if word.isdigit()]
    return numbers[0], numbers[2]  # "{better} of {n} prompts better ... and {worse} worse"


# -- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "edges", "features", "message"),
    [
        (CIRCUIT_NODES, [("prev", "indd.k")], None, "no node 'indd'; did you mean 'ind'"),
        (CIRCUIT_NODES, [("tokens", "prev.x")], None, r"\.x names an input of a head node"),
        ({"a": mt.heads("0.0", "1.0")}, [("a", "output")], None, "make one node per layer"),
        ({"r": mt.site("blocks.0.attn.hook_pattern")}, [("r", "output")], None, "not a node a hypothesis can claim"),
        (CIRCUIT_NODES, [("tokens", "output")], None, "node 'prev' has no path of edges to 'output'"),
        (TOKENS, [("tokens", "output")], {"tokenz": len}, "feature for unknown node 'tokenz'; did you mean 'tokens'"),
        ({"output": "hook_embed"}, [], None, "other than 'output'"),
        ({"r": mt.site("blocks.0.hook_resid_pre", 1)}, [("r", "output")], None, "no heads or neurons to index"),
        (TOKENS, [("output", "tokens")], None, "'output' is the root"),
        ({"a": mt.heads("1.0", "1.1"), "b": mt.heads("1.1")}, [("a", "output"), ("b", "output")], None, "both claim"),
    ],
)
def test_malformed_hypotheses_are_explained(nodes, edges, features, message):
    with pytest.raises(mt.HypothesisError, match=message):
        mt.Hypothesis(nodes, edges, features)


def test_backward_edges_and_failing_features_are_explained(induction):
    model, prompts = induction
    backward = mt.Hypothesis(
        {"late": mt.heads("1.0"), "early": mt.heads("0.0")}, [("late", "early"), ("early", "output")]
    )
    with pytest.raises(mt.HypothesisError, match="edges run forward"):
        mt.measure(model, prompts, mt.scrub(backward), LOSS)
    broken = mt.Hypothesis(CIRCUIT_NODES, CIRCUIT_EDGES, features={"prev": lambda p: p.tokens[99]})
    with pytest.raises(mt.HypothesisError, match="feature of node 'prev' failed on prompt 0 .IndexError"):
        mt.measure(model, prompts, mt.scrub(broken), LOSS)
    unhashable = mt.Hypothesis(CIRCUIT_NODES, CIRCUIT_EDGES, features={"prev": lambda p: list(p.tokens)})
    with pytest.raises(mt.HypothesisError, match="TypeError"):
        mt.measure(model, prompts, mt.scrub(unhashable), LOSS)
    stream = {**CIRCUIT_NODES, "stream": mt.resid(1, "pre")}
    doubled = mt.Hypothesis(stream, [("tokens", "stream"), ("stream", "ind"), ("prev", "ind"), ("ind", "output")])
    with pytest.raises(mt.HypothesisError, match="both directly and inside the residual-stream node"):
        mt.measure(model, prompts, mt.scrub(doubled), LOSS)
    with pytest.raises(mt.InterventionError, match="cannot be combined"):
        mt.measure(model, prompts, mt.scrub(backward) + mt.ablate(mt.heads("0.1")), LOSS)
    with pytest.raises(mt.InterventionError, match=r"scrub\(\) takes an mt.Hypothesis"):
        mt.scrub({"nodes": {}})


def test_prompts_without_a_same_length_partner_are_explained(induction):
    model, _ = induction
    odd = mt.Prompts([[15, 1, 2, 3, 1, 2, 3], [15, 4, 5, 6, 4, 5, 6], [15, 7, 8, 7, 8]])
    with pytest.raises(mt.InterventionError, match="prompt 2 has 5 tokens and no other prompt has that length"):
        mt.measure(model, odd, mt.scrub(mt.Hypothesis(CIRCUIT_NODES, CIRCUIT_EDGES)), LOSS)


def test_no_hook_is_left_behind_after_an_error(induction):
    model, prompts = induction
    before = model.hf_model(prompts.tokens).logits

    def failing(logits, batch):
        raise RuntimeError("metric failed mid-pass")

    with pytest.raises(RuntimeError, match="mid-pass"):
        mt.measure(model, prompts, mt.scrub(mt.Hypothesis(CIRCUIT_NODES, CIRCUIT_EDGES)), failing)
    assert [m for m in model.hf_model.modules() if m._forward_hooks or m._forward_pre_hooks] == []
    torch.testing.assert_close(model.hf_model(prompts.tokens).logits, before, rtol=0, atol=0)
