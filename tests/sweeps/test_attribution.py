"""mt.attribute: its numbers equal hand-written autograd, exact patching where that is linear, completeness
for integrated gradients; it leaves the model as it found it; bad inputs are clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import mitest as mt
from mitest.sweeps.attribution import exact_change
from tests.builders import FAMILIES, build, hooks_left, random_prompts

TOLERANCE = 1e-5


@pytest.fixture(autouse=True)
def _threads(one_thread):
    """Tiny matrices run fastest on one thread."""


def _exact(model, prompts, template, metric, **options) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mt.NoOpInterventionWarning)
        swept = mt.sweep(model, prompts, template, metric, **options)
    return np.stack([exact_change(effect, template) for effect in swept.effects])


def _by_hand(hf, prompts) -> np.ndarray:
    """AtP of every head (hook_z, the input of c_proj) for logit_diff, written with torch.autograd.grad."""
    tokens, corrupted = prompts.tokens, prompts.corrupted.tokens
    layers = hf.transformer.h
    width = hf.config.n_embd // hf.config.n_head

    def z_of(ids):
        found = []
        handles = [b.attn.c_proj.register_forward_pre_hook(lambda m, a: found.append(a[0].detach())) for b in layers]
        try:
            with torch.no_grad():
                hf(ids)
        finally:
            for handle in handles:
                handle.remove()
        return found

    clean, corrupt = z_of(tokens), z_of(corrupted)
    offsets = [torch.zeros_like(z, requires_grad=True) for z in clean]
    handles = [
        b.attn.c_proj.register_forward_pre_hook(lambda m, a, o=o: (a[0] + o,))
        for b, o in zip(layers, offsets, strict=True)
    ]
    try:
        logits = hf(tokens).logits[:, -1]
        rows = torch.arange(len(tokens))
        diff = logits[rows, prompts.answers] - logits[rows, prompts.wrong]
        grads = torch.autograd.grad(diff.sum(), offsets)
    finally:
        for handle in handles:
            handle.remove()
    scores = []
    for c, k, g in zip(clean, corrupt, grads, strict=True):
        product = ((k - c) * g).unflatten(-1, (hf.config.n_head, width))  # [n, pos, head, d_head]
        scores += list(product.sum((1, 3)).T)
    return torch.stack(scores).double().numpy()


def test_atp_equals_the_same_computed_by_hand_with_autograd():
    hf = build("gpt2")
    prompts = random_prompts(n=6)
    attribution = mt.attribute(mt.Model.from_hf(hf), prompts, mt.patch(mt.heads("*")), mt.metrics.logit_diff)
    expected = _by_hand(hf, prompts)
    assert attribution.names == ["0.0", "0.1", "0.2", "0.3", "1.0", "1.1", "1.2", "1.3"]
    assert np.abs(attribution.scores - expected).max() <= TOLERANCE
    assert np.abs(expected).max() > 0.1  # the comparison is not between zeros


def _linear_model() -> mt.Model:
    """A GPT-2 whose logits are linear in layer 1's head outputs, MLP output and residual stream: no final
    LayerNorm, and layer 1's MLP writes nothing."""
    hf = build("gpt2")
    hf.transformer.ln_f = torch.nn.Identity()
    with torch.no_grad():
        hf.transformer.h[1].mlp.c_proj.weight.zero_()
        hf.transformer.h[1].mlp.c_proj.bias.zero_()
    return mt.Model.from_hf(hf)


@pytest.mark.parametrize("method", ["atp", "ig"])
@pytest.mark.parametrize(
    "template, positions",
    [
        (mt.patch(mt.heads("1.*")), None),
        (mt.patch(mt.resid(1, "post")), "each"),
        (mt.patch(mt.resid(1, "mid")), "each"),
        (mt.patch(mt.heads("1.*", kind="pattern")), None),
        (mt.patch(mt.heads("1.*"), source="clean"), None),
        (mt.ablate(mt.heads("1.*")), None),
        (mt.ablate(mt.heads("1.*"), method="mean"), None),
        (mt.ablate(mt.heads("1.*"), method="resample", seed=2), None),
    ],
    ids=["patch", "resid-each-position", "resid-mid", "pattern", "denoise", "zero", "mean", "resample"],
)
def test_on_a_metric_linear_in_the_cells_attribution_equals_exact_patching(template, positions, method):
    model, prompts = _linear_model(), random_prompts(n=6)
    attribution = mt.attribute(model, prompts, template, mt.metrics.logit_diff, method=method, positions=positions)
    exact = _exact(model, prompts, template, mt.metrics.logit_diff, positions=positions)
    assert np.abs(attribution.scores - exact).max() <= TOLERANCE
    assert np.abs(exact).max() > 0.1


def test_ig_of_one_hook_point_sums_to_patching_all_its_cells_jointly():
    model, prompts = mt.Model.from_hf(build("gpt2")), random_prompts(n=6)
    joint = {
        layer: mt.measure(model, prompts, mt.patch(mt.heads(f"{layer}.*")), mt.metrics.logit_diff).delta
        for layer in (0, 1)
    }
    errors = []
    for steps in (1, 4, 64):
        attribution = mt.attribute(
            model, prompts, mt.patch(mt.heads("*")), mt.metrics.logit_diff, method="ig", steps=steps
        )
        totals = {layer: attribution.scores[4 * layer : 4 * layer + 4].sum(0) for layer in (0, 1)}
        errors.append(max(np.abs(totals[layer] - joint[layer]).max() for layer in (0, 1)))
    scale = max(np.abs(v).max() for v in joint.values())
    assert errors[-1] <= 2e-3 * scale  # completeness, up to the midpoint rule's O(1/steps^2)
    assert errors[0] > errors[1] > errors[2]
    assert scale > 0.5


@pytest.mark.parametrize("family", FAMILIES)
def test_ig_of_a_cell_alone_at_its_hook_point_converges_to_its_exact_patch_on_every_family(family):
    """An MLP layer is the only cell of its hook point, so IG's completeness makes it its exact effect."""
    model, prompts = mt.Model.from_hf(build(family)), random_prompts(n=4)
    template = mt.patch(mt.mlp("*"))
    ig = mt.attribute(model, prompts, template, mt.metrics.loss(), method="ig", steps=48)
    exact = _exact(model, prompts, template, mt.metrics.loss())
    assert np.abs(ig.scores - exact).max() <= 2e-3 * max(np.abs(exact).max(), 1e-2)


@pytest.mark.parametrize("method", ["atp", "ig"])
def test_batch_size_does_not_change_the_estimates(method):
    model, prompts = mt.Model.from_hf(build("gpt2")), random_prompts(n=5)
    wide = mt.attribute(model, prompts, mt.patch(mt.heads("*")), mt.metrics.loss(), method=method)
    narrow = mt.attribute(model, prompts, mt.patch(mt.heads("*")), mt.metrics.loss(), method=method, batch_size=2)
    assert np.abs(wide.scores - narrow.scores).max() <= TOLERANCE


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_a_site_shared_across_the_batch_gets_one_estimate_per_prompt(family):
    """Found by review: AtP of zero-ablating hook_pos_embed ([1, pos, d]) gave every prompt the batch's sum."""
    model, prompts = mt.Model.from_hf(build(family)), random_prompts(n=6, seq=8)
    template = mt.ablate(mt.site("hook_pos_embed"))
    one = mt.attribute(model, prompts, template, mt.metrics.logit_diff, batch_size=1).scores
    whole = mt.attribute(model, prompts, template, mt.metrics.logit_diff, batch_size=6).scores
    assert np.abs(one - whole).max() <= TOLERANCE and np.ptp(whole) > 0.1


# -- gradient hygiene -------------------------------------------------------------------------------


def _state(hf):
    return (
        [p.requires_grad for p in hf.parameters()],
        [p.grad for p in hf.parameters()],
        [m.training for m in hf.modules()],
        hooks_left(hf),
    )


def _half_frozen_training_model():
    hf = build("gpt2")
    for i, parameter in enumerate(hf.parameters()):
        parameter.requires_grad_(i % 2 == 0)
    hf.train()
    hf.transformer.h[0].eval()  # mixed flags must come back exactly
    return hf


@pytest.mark.parametrize("method", ["atp", "ig"])
def test_attribution_leaves_no_grad_no_hooks_and_restores_flags(method):
    hf = _half_frozen_training_model()
    before = _state(hf)
    mt.attribute(
        mt.Model.from_hf(hf),
        random_prompts(n=4),
        mt.patch(mt.heads("*")),
        mt.metrics.logit_diff,
        method=method,
        steps=2 if method == "ig" else None,
    )
    flags, grads, training, hooks = _state(hf)
    assert flags == before[0] and training == before[2]
    assert all(grad is None for grad in grads)
    assert hooks == []


def _raising_in_backward(logits, prompts):
    values = logits[:, -1, 0]

    def boom(grad):
        raise RuntimeError("boom in backward")

    values.register_hook(boom)
    return values


def _raising_in_forward(logits, prompts):
    raise RuntimeError("boom in metric")


@pytest.mark.parametrize("metric", [_raising_in_backward, _raising_in_forward], ids=["backward", "forward"])
def test_an_exception_mid_pass_leaves_the_model_as_it_was(metric):
    hf = _half_frozen_training_model()
    before = _state(hf)
    model = mt.Model.from_hf(hf)
    with pytest.raises(RuntimeError, match="boom"):
        mt.attribute(model, random_prompts(n=4), mt.patch(mt.heads("*")), metric)
    assert _state(hf)[0] == before[0] and _state(hf)[2] == before[2]
    assert all(p.grad is None for p in hf.parameters())
    assert hooks_left(hf) == []
    mt.attribute(model, random_prompts(n=4), mt.patch(mt.heads("*")), mt.metrics.logit_diff)  # the lock was freed


# -- bad input --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    return mt.Model.from_hf(build("gpt2"))


def test_prompts_without_corrupted_twins_are_refused(tiny):
    with pytest.raises(mt.InterventionError, match="corrupted="):
        mt.attribute(tiny, random_prompts(corrupted=False), mt.patch(mt.heads("*")), mt.metrics.logit_diff)


def _detached(logits, prompts):
    return logits[:, -1, 0].detach()


def _numpy(logits, prompts):
    return logits[:, -1, 0].detach().numpy()


@pytest.mark.parametrize("metric", [mt.metrics.top1_accuracy, _detached, _numpy], ids=["top1", "detached", "numpy"])
def test_a_metric_without_gradient_is_refused(tiny, metric):
    with pytest.raises(mt.MetricError, match="not differentiable.*mt.metrics.logit_diff"):
        mt.attribute(tiny, random_prompts(), mt.patch(mt.heads("*")), metric)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_are_refused(dtype):
    model = mt.Model.from_hf(build("gpt2").to(dtype))
    with pytest.raises(mt.ModelError, match=r"half precision.*float\(\)"):
        mt.attribute(model, random_prompts(), mt.patch(mt.heads("*")), mt.metrics.logit_diff)


@pytest.mark.parametrize(
    "template, match",
    [
        (mt.path_patch(mt.heads("0.*"), mt.heads("1.0", kind="v")), "path patch.*mt.sweep"),
        (mt.steer(mt.direction("blocks.0.hook_resid_post", [1.0] * 32), 1.0), "mt.sweep varies"),
    ],
    ids=["path-patch", "steer"],
)
def test_templates_that_cannot_be_attributed_are_refused(tiny, template, match):
    with pytest.raises(mt.InterventionError, match=match):
        mt.attribute(tiny, random_prompts(), template, mt.metrics.logit_diff)


def test_an_empty_cell_set_and_bad_options_are_refused(tiny):
    prompts = random_prompts()
    with pytest.raises(mt.SiteError, match="no cells"):
        mt.attribute(tiny, prompts, mt.patch(mt.Sites(())), mt.metrics.logit_diff)
    with pytest.raises(mt.MitestError, match="method"):
        mt.attribute(tiny, prompts, mt.patch(mt.heads("*")), mt.metrics.logit_diff, method="eap")
    with pytest.raises(mt.MitestError, match="steps"):
        mt.attribute(tiny, prompts, mt.patch(mt.heads("*")), mt.metrics.logit_diff, steps=8)
    with pytest.raises(mt.MitestError, match="steps"):
        mt.attribute(tiny, prompts, mt.patch(mt.heads("*")), mt.metrics.logit_diff, method="ig", steps=0)
