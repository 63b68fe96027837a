"""mt.attribute_edges: EAP equals a hand computation with autograd, equals exact path patching where the
readout is linear, finds the zoo induction circuit; its circuit() is a Hypothesis mt.circuit and mt.scrub
take; it leaves the model as it found it; bad inputs are clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import mitest as mt
from tests.builders import FAMILIES, build, hooks_left, random_prompts

TOLERANCE = 1e-5
EVERYTHING = [mt.heads("*"), mt.mlp("*"), "hook_embed"]


@pytest.fixture(autouse=True)
def _threads(one_thread):
    """Tiny matrices run fastest on one thread."""


def _double_gpt2() -> torch.nn.Module:
    return build("gpt2").double()


# -- the reference: EAP written out with torch.autograd ---------------------------------------------


def _stage_written(name: str) -> int:
    if name == "hook_embed":
        return 0
    layer = int(name.split(" ")[-1] if name.startswith("mlp") else name.split(".")[0])
    return 2 * layer + (2 if name.startswith("mlp") else 1)


def _stage_read(name: str, n_layers: int) -> int:
    if name == "logits":
        return 2 * n_layers
    if name.startswith("mlp"):
        return 2 * int(name.split(" ")[-1]) + 1
    return 2 * int(name.split(".")[0])


def _by_hand(hf, prompts, alphas=(0.0,)) -> dict[str, np.ndarray]:
    """Every edge's EAP score per prompt for logit_diff, from weight slices and torch.autograd: a head's
    output is its slice of c_proj applied to its z change; a head input's gradient is the vjp of
    ``c_attn(ln_1(x))`` restricted to that head's q, k or v columns. ``alphas`` average the gradients over
    token embeddings moved that far towards the corrupted ones (EAP-IG)."""
    blocks, cfg = hf.transformer.h, hf.config
    d, n_head = cfg.n_embd, cfg.n_head
    dh = d // n_head
    rows = torch.arange(len(prompts))

    def capture(ids):
        found = {}
        handles = [hf.transformer.wte.register_forward_hook(lambda m, a, o: found.__setitem__("embed", o))]
        for layer, block in enumerate(blocks):
            handles += [
                block.attn.c_proj.register_forward_pre_hook(
                    lambda m, a, layer=layer: found.__setitem__(("z", layer), a[0])
                ),
                block.mlp.register_forward_hook(lambda m, a, o, layer=layer: found.__setitem__(("mlp", layer), o)),
                block.register_forward_pre_hook(lambda m, a, layer=layer: found.__setitem__(("pre", layer), a[0])),
            ]
        try:
            with torch.no_grad():
                hf(ids)
        finally:
            for handle in handles:
                handle.remove()
        return found

    clean, corrupt = capture(prompts.tokens), capture(prompts.corrupted.tokens)
    outputs = {"hook_embed": corrupt["embed"] - clean["embed"]}
    for layer, block in enumerate(blocks):
        dz = corrupt[("z", layer)] - clean[("z", layer)]
        for h in range(n_head):
            weight = block.attn.c_proj.weight[h * dh : (h + 1) * dh]  # Conv1D: [in, out]
            outputs[f"{layer}.{h}"] = (dz[..., h * dh : (h + 1) * dh] @ weight).detach()
        outputs[f"mlp {layer}"] = corrupt[("mlp", layer)] - clean[("mlp", layer)]

    gradients: dict[str, torch.Tensor] = {}
    for alpha in alphas:
        qkv = [torch.zeros(*prompts.tokens.shape, 3 * d, dtype=torch.float64, requires_grad=True) for _ in blocks]
        mlp_in = [torch.zeros(*prompts.tokens.shape, d, dtype=torch.float64, requires_grad=True) for _ in blocks]
        final = torch.zeros(*prompts.tokens.shape, d, dtype=torch.float64, requires_grad=True)
        shift = alpha * outputs["hook_embed"]
        handles = [hf.transformer.wte.register_forward_hook(lambda m, a, o, shift=shift: o + shift)]
        pre = {}
        for layer, block in enumerate(blocks):
            handles += [
                block.attn.c_attn.register_forward_hook(lambda m, a, o, offset=qkv[layer]: o + offset),
                block.ln_2.register_forward_pre_hook(lambda m, a, offset=mlp_in[layer]: (a[0] + offset,)),
                block.register_forward_pre_hook(
                    lambda m, a, layer=layer, pre=pre: pre.__setitem__(layer, a[0].detach())
                ),
            ]
        handles.append(hf.transformer.ln_f.register_forward_pre_hook(lambda m, a, final=final: (a[0] + final,)))
        try:
            logits = hf(prompts.tokens).logits[:, -1]
            diff = logits[rows, prompts.answers] - logits[rows, prompts.wrong]
            *g_qkv, g_final = torch.autograd.grad(diff.sum(), [*qkv, final], retain_graph=True)
            g_mlp = torch.autograd.grad(diff.sum(), mlp_in)
        finally:
            for handle in handles:
                handle.remove()
        found = {"logits": g_final}
        for layer, block in enumerate(blocks):
            found[f"mlp {layer}"] = g_mlp[layer]
            for part, kind in enumerate("qkv"):
                for h in range(n_head):
                    columns = slice(part * d + h * dh, part * d + (h + 1) * dh)
                    cotangent = torch.zeros_like(g_qkv[layer])
                    cotangent[..., columns] = g_qkv[layer][..., columns]
                    _, back = torch.autograd.functional.vjp(
                        lambda x, block=block: block.attn.c_attn(block.ln_1(x)), pre[layer], cotangent
                    )
                    found[f"{layer}.{h}.{kind}"] = back
        for name, grad in found.items():
            gradients[name] = gradients.get(name, 0) + grad / len(alphas)

    scores = {}
    for sender, output in outputs.items():
        for receiver, grad in gradients.items():
            if _stage_written(sender) <= _stage_read(receiver, len(blocks)):
                scores[f"{sender} -> {receiver}"] = (output * grad).sum((1, 2)).detach().numpy()
    return scores


@pytest.mark.parametrize("method, alphas", [("eap", (0.0,)), ("eap-ig", (0.125, 0.375, 0.625, 0.875))])
def test_eap_equals_the_same_computed_by_hand_with_autograd(method, alphas):
    hf = _double_gpt2()
    prompts = random_prompts(n=5)
    steps = None if method == "eap" else len(alphas)
    edges = mt.attribute_edges(
        mt.Model.from_hf(hf), prompts, mt.metrics.logit_diff, senders=EVERYTHING, method=method, steps=steps
    )
    expected = _by_hand(hf, prompts, alphas)
    assert sorted(edges.names) == sorted(expected)
    assert len(edges) == 27 + 4 * 15 + 14 + 4 * 2 + 1  # from the embedding, layer 0's heads and MLP, layer 1's
    worst = max(float(np.abs(edges[name] - values).max()) for name, values in expected.items())
    assert worst <= TOLERANCE
    assert max(float(np.abs(values).max()) for values in expected.values()) > 0.1  # not a comparison of zeros


def test_edge_names_and_order_follow_path_patching():
    edges = mt.attribute_edges(mt.Model.from_hf(build("gpt2")), random_prompts(n=2), mt.metrics.logit_diff)
    assert edges.names[:3] == ["0.0 -> mlp 0", "0.0 -> 1.0.q", "0.0 -> 1.1.q"]
    assert edges.names[-2:] == ["1.3 -> mlp 1", "1.3 -> logits"]
    assert "1.0 -> 1.1.q" not in edges.names  # a head reads only earlier layers
    assert "1.0 -> mlp 1" in edges.names  # an MLP reads its own layer's attention
    frame = edges.frame()
    assert list(frame.columns) == ["edge", "sender", "receiver", "estimate", "low", "high", "n"]
    assert frame.loc[1, "receiver"] == "1.0.q"


# -- where EAP is exact -----------------------------------------------------------------------------


def test_edges_into_a_linear_readout_equal_exact_path_patching():
    """Without the final LayerNorm the logits, and so logit_diff, are linear in the final residual, and
    path patching a sender into the logits adds exactly its change of output there: EAP is exact."""
    hf = _double_gpt2()
    hf.transformer.ln_f = torch.nn.Identity()
    model, prompts = mt.Model.from_hf(hf), random_prompts(n=5)
    edges = mt.attribute_edges(model, prompts, mt.metrics.logit_diff, senders=EVERYTHING, receivers="logits")
    assert len(edges) == 11
    exact = np.stack(
        [
            mt.measure(model, prompts, mt.path_patch(e.sender, e.receiver), mt.metrics.logit_diff).delta
            for e in edges.edges
        ]
    )
    assert np.abs(edges.scores - exact).max() <= TOLERANCE
    assert np.abs(exact).max() > 0.5
    assert edges.verify(top_k=3).rank_correlation == pytest.approx(1.0)


def test_with_the_final_layernorm_edges_into_the_logits_are_only_approximate():
    model, prompts = mt.Model.from_hf(_double_gpt2()), random_prompts(n=5)
    edges = mt.attribute_edges(model, prompts, mt.metrics.logit_diff, receivers="logits")
    exact = np.stack(
        [
            mt.measure(model, prompts, mt.path_patch(e.sender, e.receiver), mt.metrics.logit_diff).delta
            for e in edges.edges
        ]
    )
    assert np.abs(edges.scores - exact).max() > 1e-3  # the linear case above is exact for its linearity


# -- the zoo induction circuit ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def induction():
    model, sets = mt.zoo.load("induction")
    return model, sets["next_token"]


CIRCUIT = {f"1.{h} -> logits" for h in range(4)} | {f"0.0 -> 1.{h}.k" for h in range(4)}


@pytest.mark.parametrize("method, top, rho", [("eap", 4, 0.88), ("eap-ig", 7, 0.88)])
def test_on_the_zoo_induction_model_the_top_edges_are_the_known_circuit(induction, method, top, rho):
    """Measured: EAP ranks the four logits edges first, then 0.0 -> 1.1.k; the other keys edges come 8th,
    10th, 11th (below value edges), since the induction heads' saturated attention hides them from the
    gradient. EAP-IG puts 0.0 -> 1.2.k second and all eight circuit edges in its top 8. Both rank the
    68 edges with Spearman's rho 0.88 against exact path patching."""
    model, prompts = induction
    edges = mt.attribute_edges(model, prompts, mt.metrics.logit_diff, method=method)
    assert len(edges) == 68
    assert set(edges.ranking()[:top]) <= CIRCUIT
    if method == "eap-ig":
        assert set(edges.ranking()[:8]) == CIRCUIT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mt.NoOpInterventionWarning)  # heads 0.1-0.3 write nothing
        agreement = edges.verify(top_k=4)
    assert agreement.rank_correlation == pytest.approx(rho, abs=0.01)
    _, by_exact = agreement.top()
    assert set(by_exact) == {"1.2 -> logits", "0.0 -> 1.2.k", "1.3 -> logits", "0.0 -> 1.3.k"}


def test_the_agreement_claim_is_decided_as_for_node_attribution(induction):
    model, prompts = induction
    edges = mt.attribute_edges(model, prompts, mt.metrics.logit_diff, method="eap-ig")
    eap = mt.attribute_edges(model, prompts, mt.metrics.logit_diff)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mt.NoOpInterventionWarning)
        with pytest.raises(
            mt.ClaimRefuted, match=r"(?s)0\.0 -> 1\.2\.k: top 4 by exact.*0\.0 -> 1\.3\.k: top 4 by exact"
        ):
            eap.expect_agrees_with_patching(top_k=4, rank_correlation_at_least=0.5)
        with pytest.raises(mt.ClaimRefuted, match=r"0\.0 -> 1\.3\.k: top 4 by exact patching"):
            edges.expect_agrees_with_patching(top_k=4, rank_correlation_at_least=0.5)
        verdict = edges.expect_agrees_with_patching(top_k=1, rank_correlation_at_least=0.6)  # 90% CI [0.69, 1.0]
    assert verdict.holds
    assert "of 68 edges" in verdict.claim and "eap-ig (16 steps)" in verdict.claim


# -- the circuit as a hypothesis --------------------------------------------------------------------


def test_circuit_makes_a_hypothesis_that_mt_circuit_and_mt_scrub_take(induction):
    model, prompts = induction
    edges = mt.attribute_edges(model, prompts, mt.metrics.logit_diff, method="eap-ig")
    hypothesis = edges.circuit(top_k=8)
    assert isinstance(hypothesis, mt.Hypothesis)
    assert set(hypothesis.edges) == {
        *((f"head_1_{h}", "output", "all") for h in range(4)),
        *(("head_0_0", f"head_1_{h}", "k") for h in range(4)),
    }
    assert hypothesis.site("head_0_0") == mt.head(0, 0)
    test = mt.circuit(
        model,
        prompts,
        hypothesis,
        mt.metrics.logit_diff,
        components=[mt.head(layer, h) for layer in (0, 1) for h in range(4)],
    )
    assert np.abs(test.effect.intervened - test.effect.clean).max() < 1e-4  # the circuit alone is the model
    assert test.effect.corrupted.mean() < test.effect.clean.mean() - 1  # and knocking it out is not
    assert sorted(map(str, test.circuit)) == sorted(map(str, [mt.head(0, 0), *(mt.head(1, h) for h in range(4))]))
    mt.measure(model, prompts, mt.scrub(hypothesis), mt.metrics.logit_diff)  # scrubbing takes it too
    assert edges.circuit(threshold=0.6).edges == edges.circuit(top_k=4).edges  # 4 edges above 0.6 (0.75, 0.55 next)


def test_circuit_leaves_out_kept_edges_that_reach_no_path_to_the_logits(induction):
    model, prompts = induction
    edges = mt.attribute_edges(model, prompts, mt.metrics.logit_diff, receivers=mt.heads("1.*", kind="k"))
    with pytest.raises(mt.MitestError, match="no circuit"):
        edges.circuit(top_k=2)


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


@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_edge_attribution_leaves_no_grad_no_hooks_and_restores_flags(method):
    hf = _half_frozen_training_model()
    before = _state(hf)
    mt.attribute_edges(
        mt.Model.from_hf(hf),
        random_prompts(n=4),
        mt.metrics.logit_diff,
        method=method,
        steps=2 if method == "eap-ig" else None,
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
        mt.attribute_edges(model, random_prompts(n=4), metric)
    assert _state(hf)[0] == before[0] and _state(hf)[2] == before[2]
    assert all(p.grad is None for p in hf.parameters())
    assert hooks_left(hf) == []
    mt.attribute_edges(model, random_prompts(n=4), mt.metrics.logit_diff)  # the lock was freed


# -- bad input --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    return mt.Model.from_hf(build("gpt2"))


def test_an_architecture_path_patching_does_not_support_is_refused():
    with pytest.raises(mt.SiteError, match="attribute_edges needs a pre-LayerNorm residual-stream model.*BERT"):
        mt.attribute_edges(mt.Model.from_hf(build("bert")), random_prompts(), mt.metrics.logit_diff)


def test_prompts_without_corrupted_twins_are_refused(tiny):
    with pytest.raises(mt.InterventionError, match="corrupted="):
        mt.attribute_edges(tiny, random_prompts(corrupted=False), mt.metrics.logit_diff)


def _detached(logits, prompts):
    return logits[:, -1, 0].detach()


@pytest.mark.parametrize("metric", [mt.metrics.top1_accuracy, _detached], ids=["top1", "detached"])
def test_a_metric_without_gradient_is_refused(tiny, metric):
    with pytest.raises(mt.MetricError, match="not differentiable.*mt.metrics.logit_diff"):
        mt.attribute_edges(tiny, random_prompts(), metric)


def test_half_precision_models_are_refused():
    with pytest.raises(mt.ModelError, match=r"half precision.*float\(\)"):
        mt.attribute_edges(mt.Model.from_hf(build("gpt2").half()), random_prompts(), mt.metrics.logit_diff)


def test_bad_options_are_refused(tiny):
    prompts = random_prompts()
    with pytest.raises(mt.MitestError, match="method"):
        mt.attribute_edges(tiny, prompts, mt.metrics.logit_diff, method="atp")
    with pytest.raises(mt.MitestError, match="steps"):
        mt.attribute_edges(tiny, prompts, mt.metrics.logit_diff, steps=8)
    with pytest.raises(mt.MitestError, match="steps"):
        mt.attribute_edges(tiny, prompts, mt.metrics.logit_diff, method="eap-ig", steps=0)
    with pytest.raises(mt.SiteError, match="does not write to the residual stream"):
        mt.attribute_edges(tiny, prompts, mt.metrics.logit_diff, senders=mt.resid(0, "post"))
    with pytest.raises(mt.SiteError, match="not an edge's receiver"):
        mt.attribute_edges(tiny, prompts, mt.metrics.logit_diff, receivers=mt.resid(1, "pre"))
    with pytest.raises(mt.SiteError, match="neurons"):
        mt.attribute_edges(tiny, prompts, mt.metrics.logit_diff, receivers=mt.neurons(1, 3))
    with pytest.raises(mt.SiteError, match="not an edge's receiver"):  # found by review: an AttributeError
        mt.attribute_edges(tiny, prompts, mt.metrics.logit_diff, receivers="foo")
    with pytest.raises(mt.SiteError, match="no receiver reads"):
        mt.attribute_edges(tiny, prompts, mt.metrics.logit_diff, senders=mt.heads("1.*"), receivers=mt.heads("0.*"))
    with pytest.raises(mt.SiteError, match="drop .at"):
        mt.attribute_edges(tiny, prompts, mt.metrics.logit_diff, senders=mt.heads("0.1").at("last"))
    with pytest.raises(mt.SiteError, match="more than once"):
        mt.attribute_edges(tiny, prompts, mt.metrics.logit_diff, senders=[mt.heads("*"), mt.heads("0.1")])


def test_circuit_needs_exactly_one_of_top_k_and_threshold(tiny):
    edges = mt.attribute_edges(tiny, random_prompts(), mt.metrics.logit_diff)
    with pytest.raises(mt.MitestError, match="exactly one of top_k"):
        edges.circuit()
    with pytest.raises(mt.MitestError, match="exactly one of top_k"):
        edges.circuit(top_k=3, threshold=0.1)
    with pytest.raises(mt.MitestError, match=f"from 1 to {len(edges)} \\(the edge count\\)"):
        edges.circuit(top_k=len(edges) + 1)
    with pytest.raises(mt.MitestError, match="threshold must be a number"):
        edges.circuit(threshold=-1.0)
    with pytest.raises(mt.MitestError, match="edges minus one"):
        edges.verify(top_k=len(edges))
    with pytest.raises(mt.SiteError, match="closest"):
        edges["0.0 -> 1.0.z"]


_FINAL_NORMS = {"gpt2": ("transformer", "ln_f"), "gpt_neox": ("gpt_neox", "final_layer_norm")}


@pytest.mark.parametrize("family", [family for family in FAMILIES if family != "bert"])
def test_every_senders_edges_into_a_linear_readout_sum_to_the_corrupted_run_on_every_family(family):
    """The final residual is the sum of every writer's output, so with a linear readout the edges of all
    senders into the logits add up to the metric's change from the clean to the corrupted run."""
    hf = build(family).double()
    base, norm = _FINAL_NORMS.get(family.removesuffix("_serial"), ("model", "norm"))
    setattr(getattr(hf, base), norm, torch.nn.Identity())
    model, prompts = mt.Model.from_hf(hf), random_prompts(n=4)
    edges = mt.attribute_edges(model, prompts, mt.metrics.logit_diff, senders=EVERYTHING, receivers="logits")
    effect = mt.measure(model, prompts, mt.patch("hook_embed"), mt.metrics.logit_diff)  # the corrupted tokens
    assert np.abs(edges.scores.sum(0) - effect.delta).max() <= TOLERANCE * max(1.0, np.abs(effect.delta).max())
    assert np.abs(effect.delta).max() > 0.1
