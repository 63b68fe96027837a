"""Path patching and scrubbing beyond GPT-2: identities that hold on every residual family, and the
errors for what a family cannot express (shared key/value heads, post-LayerNorm BERT)."""

from __future__ import annotations

import numpy as np
import pytest

import mitest as mt
from tests.builders import build, hooks_left, random_prompts

RESIDUAL_FAMILIES = ("gpt2", "gpt_neox", "gpt_neox_serial", "llama", "qwen2")
LOGIT_DIFF = mt.metrics.logit_diff


@pytest.mark.parametrize("family", RESIDUAL_FAMILIES)
def test_the_last_mlps_path_to_the_logits_is_patching_it(family):
    """Nothing lies between the last MLP and the logits, so its direct path is its whole effect."""
    model, prompts = mt.Model.from_hf(build(family)), random_prompts()
    path = mt.measure(model, prompts, mt.path_patch(mt.mlp(1), "logits"), LOGIT_DIFF)
    whole = mt.measure(model, prompts, mt.patch(mt.mlp(1)), LOGIT_DIFF)
    np.testing.assert_allclose(path.intervened, whole.intervened, rtol=1e-5, atol=1e-5)
    assert np.abs(path.delta).max() > 1e-3
    assert hooks_left(model.hf_model) == []


@pytest.mark.parametrize("family", RESIDUAL_FAMILIES)
def test_a_path_is_not_the_whole_effect_when_a_component_lies_between(family):
    """Head 0.1's direct path to the logits leaves out its route through layer 1."""
    model, prompts = mt.Model.from_hf(build(family)), random_prompts()
    path = mt.measure(model, prompts, mt.path_patch(mt.heads("0.1"), "logits"), LOGIT_DIFF)
    whole = mt.measure(model, prompts, mt.patch(mt.heads("0.1")), LOGIT_DIFF)
    assert np.abs(path.intervened - whole.intervened).max() > 1e-3


@pytest.mark.parametrize("family", RESIDUAL_FAMILIES)
def test_claiming_every_path_scrubs_to_the_clean_model(family):
    """A hypothesis that claims every writer with every edge leaves nothing to resample."""
    model, prompts = mt.Model.from_hf(build(family)), random_prompts(n=8)
    nodes = {"tokens": "hook_embed", "attn0": mt.attn(0), "mlp0": mt.mlp(0), "attn1": mt.attn(1), "mlp1": mt.mlp(1)}
    order = list(nodes)
    edges = [(a, b) for i, a in enumerate(order) for b in order[i + 1 :] if not (a, b) == ("attn1", "mlp0")]
    if family == "gpt_neox":  # parallel residual: each MLP reads the stream its layer's attention reads
        edges = [(a, b) for a, b in edges if (a, b) not in {("attn0", "mlp0"), ("attn1", "mlp1")}]
    effect = mt.measure(
        model, prompts, mt.scrub(mt.Hypothesis(nodes, edges + [(n, "output") for n in order])), LOGIT_DIFF
    )
    np.testing.assert_allclose(effect.intervened, effect.clean, rtol=1e-4, atol=1e-4)
    assert np.abs(effect.corrupted - effect.clean).max() > 1e-3


def test_shared_key_value_heads_cannot_be_reached_one_query_head_at_a_time():
    model, prompts = mt.Model.from_hf(build("llama")), random_prompts()
    with pytest.raises(mt.SiteError, match="shares each key/value head among 2 query heads"):
        mt.measure(model, prompts, mt.path_patch(mt.heads("0.0"), mt.heads("1.1")), LOGIT_DIFF)
    # Named by input, the shared key/value head is explicit and allowed.
    keys = mt.measure(model, prompts, mt.path_patch(mt.heads("0.0"), mt.heads("1.1", kind="k")), LOGIT_DIFF)
    assert np.abs(keys.delta).max() > 1e-4
    split = mt.Hypothesis({"tokens": "hook_embed", "h": mt.heads("1.1")}, [("tokens", "h.q"), ("h", "output")])
    with pytest.raises(mt.SiteError, match="node 'h' with edges into its q, k or v"):
        mt.measure(model, prompts, mt.scrub(split), LOGIT_DIFF)


@pytest.mark.parametrize(
    ("sender", "receivers", "message"),
    [
        (mt.heads("0.1"), mt.neurons(1, 3), r"neurons share one input, .* mt.mlp\(1\)"),
        (mt.heads("1.1"), mt.heads("1.2", kind="q"), "writes to the residual stream after"),
        (mt.heads("0.1"), mt.head(1, 2, kind="pattern"), "does not read the residual stream as a whole"),
        (mt.resid(0), "logits", "does not write to the residual stream"),
        (mt.heads("0.7"), "logits", "index 7 does not exist"),
        (mt.heads("0.1"), mt.heads("1.9", kind="k"), "index 9 does not exist"),
    ],
)
def test_path_patching_explains_impossible_paths(sender, receivers, message):
    model, prompts = mt.Model.from_hf(build("gpt2")), random_prompts()
    with pytest.raises(mt.MitestError, match=message):
        mt.measure(model, prompts, mt.path_patch(sender, receivers), LOGIT_DIFF)
    assert hooks_left(model.hf_model) == []


def test_bert_is_refused_with_the_reason():
    model = mt.Model.from_hf(build("bert"))
    with pytest.raises(mt.SiteError, match="pre-LayerNorm residual-stream model"):
        mt.measure(model, random_prompts(), mt.path_patch(mt.heads("0.1"), "logits"), LOGIT_DIFF)


@pytest.mark.parametrize(
    ("build_hypothesis", "message"),
    [
        (
            lambda: mt.Hypothesis({"a": mt.heads("1.0")}, [("a", "output"), ("a", "output")]),
            "listed twice",
        ),
        (
            lambda: mt.Hypothesis(
                {"a": mt.heads("1.0"), "b": mt.heads("1.0").at("last")}, [("a", "output"), ("b", "output")]
            ),
            "both claim",
        ),
        (lambda: mt.scrub(mt.Hypothesis({"a": mt.heads("1.0")}, [("a", "output")]), seed=-1), "non-negative int"),
    ],
)
def test_ambiguous_hypotheses_are_refused(build_hypothesis, message):
    with pytest.raises(mt.MitestError, match=message):
        build_hypothesis()
