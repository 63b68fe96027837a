"""Hooks fire, are verified, and are always removed; the user's model is never modified."""

from __future__ import annotations

import copy

import pytest
import torch

import mitest as mt
from mitest.engine import hooks as mitest_hooks
from tests.builders import build, hooks_left, random_prompts


def _state(hf_model):
    return {
        "hooks": hooks_left(hf_model),
        "training": [m.training for m in hf_model.modules()],
        "attn": hf_model.config._attn_implementation,
        "pattern_edits": len(mitest_hooks._PATTERN_EDITS),
    }


def _assert_untouched(hf_model, before, weights):
    assert _state(hf_model) == before
    for (name, param), original in zip(hf_model.named_parameters(), weights, strict=True):
        assert torch.equal(param, original), f"{name} was modified"


# Interventions covering every hook kind: module input, output, residual sum and attention pattern.
EVERY_KIND = mt.combine(
    mt.ablate(mt.heads("0.1")),
    mt.patch([mt.resid(1, "pre"), mt.head(1, 2, "pattern"), mt.mlp(0)], source="corrupted"),
    mt.ablate(mt.resid(0, "mid"), "mean"),
)


def _fail_once_hooked(hf_model, exception):
    """A metric that raises only while mitest's intervention hooks are installed."""
    raised = []

    def metric(logits, batch):
        if hooks_left(hf_model) or mitest_hooks._PATTERN_EDITS:
            raised.append(True)
            raise exception
        return logits[:, -1, 0]

    return metric, raised


@pytest.mark.parametrize(
    "exception", [RuntimeError("metric broke"), KeyboardInterrupt()], ids=["error", "keyboard-interrupt"]
)
def test_hooks_are_removed_when_the_metric_raises(family, exception):
    hf_model = build(family)
    hf_model.train()  # the user's mode must come back too
    before, weights = _state(hf_model), [p.detach().clone() for p in hf_model.parameters()]
    model = mt.Model.from_hf(hf_model)
    intervention = EVERY_KIND if "blocks.0.hook_resid_mid" in model.sites() else mt.ablate(mt.heads("0.1"))
    metric, raised = _fail_once_hooked(hf_model, exception)
    with pytest.raises(type(exception)):
        mt.measure(model, random_prompts(), intervention, metric)
    assert raised, "the metric must have raised while the intervention hooks were installed"
    _assert_untouched(hf_model, before, weights)


def test_hooks_are_removed_when_the_forward_pass_raises(model, prompts):
    hf_model = model.hf_model
    before, weights = _state(hf_model), [p.detach().clone() for p in hf_model.parameters()]
    wrong_length = mt.direction("blocks.1.attn.hook_z", torch.ones(7))  # d_head is 8
    with pytest.raises(mt.InterventionError, match="7 entries"):
        mt.measure(model, prompts, mt.ablate(wrong_length) + mt.patch(mt.head(0, 0, "pattern")), mt.metrics.logit_diff)
    _assert_untouched(hf_model, before, weights)


def test_hooks_are_removed_when_the_model_is_interrupted_mid_forward(model, prompts):
    hf_model = model.hf_model
    before = _state(hf_model)
    last_layer = hf_model.get_submodule(
        [
            name
            for name, _ in hf_model.named_modules()
            if name.endswith("layers.1") or name.endswith("h.1") or name.endswith("layer.1")
        ][0]
    )
    interrupted = []

    def interrupt(module, args, output):
        others = [name for name in hooks_left(hf_model) if hf_model.get_submodule(name) is not last_layer]
        if others and mitest_hooks._PATTERN_EDITS:  # only in the intervened pass, all hook kinds live
            interrupted.append(others)
            raise KeyboardInterrupt

    intervention = mt.combine(mt.ablate(mt.heads("0.1")), mt.patch(mt.head(0, 2, "pattern"), source="corrupted"))
    handle = last_layer.register_forward_hook(interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            mt.measure(model, prompts, intervention, mt.metrics.logit_diff)
    finally:
        handle.remove()
    assert interrupted, "the interrupt must hit the pass that carries the intervention hooks"
    assert _state(hf_model) == before


def test_a_successful_run_leaves_the_model_exactly_as_it_was(family):
    hf_model = build(family)
    reference = copy.deepcopy(hf_model)
    before, weights = _state(hf_model), [p.detach().clone() for p in hf_model.parameters()]
    model = mt.Model.from_hf(hf_model)
    for site in model.sites():
        mt.measure(
            model,
            random_prompts(),
            mt.ablate(site, "resample" if site != "hook_pos_embed" else "zero"),
            mt.metrics.logit_diff,
        )
    _assert_untouched(hf_model, before, weights)
    tokens = random_prompts().tokens
    with torch.no_grad():
        torch.testing.assert_close(hf_model(tokens).logits, reference(tokens).logits, atol=0, rtol=0)


def test_every_site_of_every_family_fires_and_changes_its_activation(model, prompts):
    for site in model.sites():
        effect = mt.measure(model, prompts, mt.ablate(site), mt.metrics.logit_diff, strict=True)
        assert effect.hooks == ({"site": site, "fired": 1, "changed": True},)
        assert abs(effect.delta).max() > 0, site
        if site != "hook_pos_embed":  # positions are the same in clean and corrupted prompts
            effect = mt.measure(model, prompts, mt.patch(site, source="corrupted"), mt.metrics.logit_diff, strict=True)
            assert effect.hooks == ({"site": site, "fired": 1, "changed": True},)


def test_patching_position_embeddings_between_aligned_prompts_is_reported_as_a_no_op(prompts):
    model = mt.Model.from_hf(build("gpt2"))
    with pytest.raises(mt.InterventionError, match="hook_pos_embed unchanged"):
        mt.measure(model, prompts, mt.patch("hook_pos_embed"), mt.metrics.logit_diff, strict=True)


def test_a_hook_the_forward_pass_never_reaches_is_an_error(model, prompts):
    model.hf_model.add_module("unused_probe", torch.nn.Linear(2, 2))
    try:
        with pytest.raises(mt.HookNotFiredError, match="unused_probe.*fired 0 times"):
            mt.measure(model, prompts, mt.ablate("unused_probe"), mt.metrics.logit_diff)
    finally:
        del model.hf_model.unused_probe
    assert hooks_left(model.hf_model) == []


def test_an_intervention_that_changes_nothing_is_reported(model, prompts):
    """Patching a head from the very prompts measured changes nothing, also beside an edit of another head."""
    both = mt.ablate(mt.heads("1.0")) + mt.patch(mt.heads("1.1"), source=prompts)
    with pytest.warns(mt.NoOpInterventionWarning, match=r"blocks\.1\.attn\.hook_z"):
        effect = mt.measure(model, prompts, both, mt.metrics.logit_diff)
    assert [h["changed"] for h in effect.hooks] == [True, False]
    with pytest.raises(mt.InterventionError, match="unchanged"):
        mt.measure(model, prompts, both, mt.metrics.logit_diff, strict=True)


def test_zero_ablating_an_already_zero_activation_is_reported(prompts):
    hf_model = build("gpt2")
    with torch.no_grad():
        hf_model.transformer.h[0].attn.c_attn.weight[:, 64 : 64 + 8] = 0  # head 0's value weights
        hf_model.transformer.h[0].attn.c_attn.bias[64 : 64 + 8] = 0
    with pytest.warns(mt.NoOpInterventionWarning, match="already zero"):
        effect = mt.measure(mt.Model.from_hf(hf_model), prompts, mt.ablate(mt.head(0, 0)), mt.metrics.logit_diff)
    assert (effect.delta == 0).all()


def test_raw_module_paths_work_on_any_module(model, prompts):
    raw = [name for name, _ in model.hf_model.named_modules() if name.endswith("mlp") or name.endswith("intermediate")]
    effect = mt.measure(model, prompts, mt.ablate(raw[0]), mt.metrics.logit_diff)
    assert effect.hooks[0]["changed"] and abs(effect.delta).max() > 0
